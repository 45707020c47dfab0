package agent_test

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestDefaultRuntimeChangeKeepsServers: changing a node's default runtime
// and restarting the agent leaves running servers where they are and
// serving (the same Xray, adopted on the runtime it runs on); a server
// that names another runtime moves there, and the one it left is gone.
func TestDefaultRuntimeChangeKeepsServers(t *testing.T) {
	dockerOrSkip(t) // containerd is Docker's own one here
	f := newFleet(t, "docker")
	t.Cleanup(func() {
		cfg := f.agentConfig()
		_ = exec.Command("ctr", "-a", cfg.ContainerdAddr, "-n", "vpn", "images", "rm", "docker.io/"+f.image).Run()
	})
	a := f.startAgent()
	if got := a.Runtimes().DefaultKind(); got != runtime.KindDocker {
		t.Fatalf("default runtime %s, want docker", got)
	}
	for _, k := range runtime.Kinds {
		if a.Runtimes().Get(k) == nil {
			t.Fatalf("agent did not open the %s runtime of this host", k)
		}
	}
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	bin := xraytest.Binary(t)

	srv := f.createServer("edge", dest)
	st := f.waitStatus(srv.ID, srv.Revision, server.StateApplied).Status
	if st.Runtime != "docker" {
		t.Fatalf("status runtime %q, want docker", st.Runtime)
	}
	u := f.createUser("alice")
	links := f.links(u.ID, srv.ID)
	clients := map[user.Protocol]*xraytest.Client{}
	for _, p := range user.Protocols {
		clients[p] = xraytest.StartClient(t, bin, outbound(t, links[p]))
		connects(t, clients[p], target, "alice over "+string(p))
	}
	before, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}

	f.stop()
	f.runtime = "containerd"
	a = f.startAgent()
	if got := a.Runtimes().DefaultKind(); got != runtime.KindContainerd {
		t.Fatalf("default runtime %s after the restart, want containerd", got)
	}
	waitfor.Cond(t, applyWait, func() error {
		rs, err := f.running(srv.ID)
		if err != nil {
			return err
		}
		if rs.Instance != before.Instance {
			return fmt.Errorf("xray %s replaced by %s", before.Instance, rs.Instance)
		}
		return nil
	})
	f.assertOnlyOn(srv.ID, runtime.KindDocker)
	for _, p := range user.Protocols {
		connects(t, clients[p], target, "alice over "+string(p)+" after the default changed")
	}

	// A new server starts on the new default.
	second := f.createServer("edge-2", dest)
	if st := f.waitStatus(second.ID, second.Revision, server.StateApplied).Status; st.Runtime != "containerd" {
		t.Fatalf("new server runs on %q, want the default containerd", st.Runtime)
	}
	f.assertOnlyOn(second.ID, runtime.KindContainerd)

	// Naming a runtime moves the server there.
	moved := f.setRuntime(srv.ID, "process")
	st = f.waitStatus(srv.ID, moved.Revision, server.StateApplied).Status
	if st.Runtime != "process" {
		t.Fatalf("status runtime %q after the move, want process", st.Runtime)
	}
	f.assertOnlyOn(srv.ID, runtime.KindProcess)
	for _, p := range user.Protocols {
		connects(t, clients[p], target, "alice over "+string(p)+" after the move")
	}

	// Bad input: an unknown runtime is refused by the registry.
	if _, err := f.updateRuntime(srv.ID, "podman"); !errors.Is(err, errs.Invalid) || errs.FieldsOf(err)[0].Field != "runtime" {
		t.Fatalf("unknown runtime: err %v, want Invalid on field runtime", err)
	}
}

// setRuntime names the runtime server id runs on, through the registry.
func (f *fleet) setRuntime(id, rt string) server.Server {
	f.t.Helper()
	s, err := f.updateRuntime(id, rt)
	if err != nil {
		f.t.Fatalf("moving server %s to %s: %v", id, rt, err)
	}
	return s
}

func (f *fleet) updateRuntime(id, rt string) (server.Server, error) {
	return bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersUpdate), server.UpdateRequest{ID: id, Runtime: &rt})
}

// assertOnlyOn checks that server id's Xray runs on runtime kind and on no
// other runtime of the node.
func (f *fleet) assertOnlyOn(id string, kind runtime.Kind) {
	f.t.Helper()
	a := f.currentAgent()
	for _, k := range runtime.Kinds {
		rt := a.Runtimes().Get(k)
		w, err := rt.Inspect(f.ctx(), server.WorkloadName(id))
		switch {
		case k == kind && err != nil:
			f.t.Fatalf("server %s has no xray on %s: %v", id, k, err)
		case k == kind && w.State != runtime.StateRunning:
			f.t.Fatalf("server %s's xray on %s is %s", id, k, w.State)
		case k != kind && err == nil:
			f.t.Fatalf("server %s has an xray on %s too (%s)", id, k, w.State)
		case k != kind && !errors.Is(err, errs.NotFound):
			f.t.Fatalf("inspecting %s: %v", k, err)
		}
	}
}
