package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/capability"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestAgentKeepsOnlyTheCapabilitiesItUses runs the real vpn-agent binary as
// root with each runtime as its default (issue 17: "the agent itself keeps
// only what it uses"): once connected, every thread of it holds exactly the
// capabilities it uses in its effective, permitted and bounding sets, none
// inheritable or ambient, no_new_privs set. The process runtime is open on
// every host (runtimes side by side), so that is the same set whatever the
// default: CAP_CHOWN and CAP_NET_BIND_SERVICE for every runtime, and the
// process runtime's CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL (the
// engines' sockets here are root's). With only those, on its default
// runtime, it deploys a server with an inbound below port 1024 that a real
// client passes traffic through, rewrites its config and replaces its Xray
// when the server changes, and removes Xray and its files when the server
// is deleted.
func TestAgentKeepsOnlyTheCapabilitiesItUses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root, whose capabilities the agent drops (CI runs as root)")
	}
	keep := capability.Of(unix.CAP_CHOWN, unix.CAP_NET_BIND_SERVICE,
		unix.CAP_SETUID, unix.CAP_SETGID, unix.CAP_SETPCAP, unix.CAP_KILL)
	bin := buildAgent(t)
	for _, rt := range []string{"process", "docker", "containerd"} {
		t.Run(rt, func(t *testing.T) {
			if rt != "process" {
				dockerOrSkip(t)
			}
			f := newFleet(t, rt)
			f.enroll()
			cmd, logPath := f.startAgentBinary(bin, nil, f.dataDir, f.ns.NodeCredential(t, f.node))
			f.waitRegistered()
			want := capability.Sets{Effective: keep, Permitted: keep, Bounding: keep, NoNewPrivs: true}
			assertThreads(t, cmd.Process.Pid, want)
			logs, _ := os.ReadFile(logPath)
			if !strings.Contains(string(logs), "agent capabilities limited to what it uses") {
				t.Errorf("the agent does not log what it kept:\n%s", logs)
			}

			ls := f.serveBelow1024("alice")
			s := ls.srv
			first := f.xrayPIDs()

			// A change rewrites the config (in the dir the agent keeps) and
			// replaces Xray, stopping the old one (another user's, on the
			// process runtime).
			s, err := f.updateServer(s.ID, inboundRequests(t, ls.dest, map[string]int{"socks": ls.port}))
			if err != nil {
				t.Fatal(err)
			}
			f.waitStatus(s.ID, s.Revision, server.StateApplied)
			connects(t, ls.client, ls.target, "alice after the server changed")
			f.waitGone(first)

			if _, err := f.deleteServerReq(s.ID); err != nil {
				t.Fatal(err)
			}
			second := f.xrayPIDs()
			waitfor.Cond(t, applyWait, func() error {
				if _, err := os.Stat(filepath.Join(f.dataDir, "xray", s.ID)); !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("files of the deleted server still there: %v", err)
				}
				return nil
			})
			f.waitGone(second)
			assertThreads(t, cmd.Process.Pid, want)
		})
	}
}

// TestUnprivilegedAgentKeepsWhatItWasGiven runs the real vpn-agent binary
// as the systemd unit does (an unprivileged user with CAP_NET_BIND_SERVICE
// ambient and the bounding set narrowed to it, no_new_privs): limiting its
// capabilities changes nothing, and its Xray, running as the agent's user
// with the capability inherited, serves a port below 1024.
func TestUnprivilegedAgentKeepsWhatItWasGiven(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to start the agent as another user (CI runs as root)")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatal("setpriv (util-linux) is needed to start the agent as the systemd unit does")
	}
	bin := runtimetest.WorldExecutable(t, buildAgent(t))
	f := newFleet(t, "process")
	f.enroll()
	const nobody = 65534
	dir := filepath.Join(runtimetest.PassableDir(t), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	f.dataDir = dir // the fleet's clean-up opens it as root
	wrap := []string{setpriv, "--reuid", fmt.Sprint(nobody), "--regid", fmt.Sprint(nobody), "--clear-groups",
		"--inh-caps", "-all,+net_bind_service", "--ambient-caps", "-all,+net_bind_service",
		"--bounding-set", "-all,+net_bind_service", "--no-new-privs", "--"}
	cmd, logPath := f.startAgentBinary(bin, wrap, dir, f.ns.NodeCredential(t, f.node))
	f.waitRegistered()
	bind := capability.Of(unix.CAP_NET_BIND_SERVICE)
	assertThreads(t, cmd.Process.Pid, capability.Sets{
		Effective: bind, Permitted: bind, Inheritable: bind, Bounding: bind, Ambient: bind, NoNewPrivs: true,
	})
	logs, _ := os.ReadFile(logPath)
	if !strings.Contains(string(logs), `"dropped":"none"`) {
		t.Errorf("the agent started with only what it uses says it dropped some:\n%s", logs)
	}

	f.serveBelow1024("bob") // as the agent's user, with the capability inherited
}

// buildAgent builds vpn-agent as the Makefile does: without cgo, which
// changing the capabilities of every thread needs.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vpn-agent")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/runtime-agent/cmd/vpn-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building vpn-agent: %v\n%s", err, out)
	}
	return bin
}

// enroll marks the fleet's node joined, as joining does, so the registry
// keeps its view.
func (f *fleet) enroll() {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketEnrollments)
	if err != nil {
		f.t.Fatal(err)
	}
	en, _ := json.Marshal(node.Enrollment{ID: f.node, State: node.EnrollJoined})
	if _, err := kv.Put(f.ctx(), f.node, en); err != nil {
		f.t.Fatal(err)
	}
}

// startAgentBinary runs bin (after the command wrap, if any) for the
// fleet's node on dataDir with the node's credential, stopped at the end
// of the test (before the fleet removes what it left), and returns it with
// the file its log goes to.
func (f *fleet) startAgentBinary(bin string, wrap []string, dataDir string, cred natsauth.Credential) (*exec.Cmd, string) {
	f.t.Helper()
	creds := filepath.Join(dataDir, "test.creds")
	if err := natsauth.WriteCredsFile(creds, cred); err != nil {
		f.t.Fatal(err)
	}
	if st, err := os.Stat(dataDir); err == nil {
		_ = os.Chown(creds, int(st.Sys().(*syscall.Stat_t).Uid), -1)
	}
	cfg := f.agentConfig()
	args := append(wrap, bin, "--nats-url", f.ns.URL(), "--nats-creds", creds,
		"--data-dir", dataDir, "--node-id", f.node, "--runtime", f.runtime,
		"--xray-bin", f.xrayBin, "--xray-image", f.image, "--containerd-address", cfg.ContainerdAddr,
		"--public-addr", "127.0.0.1", "--heartbeat", "1s", "--allow-private-networks", "--ops-addr", "")
	logPath := filepath.Join(f.t.TempDir(), "vpn-agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
	})
	return cmd, logPath
}

// waitRegistered waits until the node's agent has registered it: it is
// connected, past limiting its capabilities.
func (f *fleet) waitRegistered() {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketNodes)
	if err != nil {
		f.t.Fatal(err)
	}
	waitfor.Cond(f.t, applyWait, func() error {
		_, err := kv.Get(context.Background(), f.node)
		return err
	})
}

// xrayPIDs are the host pids of the Xray processes of the fleet's node on
// the process runtime (from its state file); none on an engine, whose
// daemon stops them.
func (f *fleet) xrayPIDs() []int {
	f.t.Helper()
	if f.runtime != "process" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(f.dataDir, "process", "process-"+f.node+".json"))
	if err != nil {
		f.t.Fatal(err)
	}
	var recs []struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		f.t.Fatal(err)
	}
	var out []int
	for _, r := range recs {
		if r.PID > 0 {
			out = append(out, r.PID)
		}
	}
	return out
}

// waitGone waits until the processes pids have ended and been reaped.
func (f *fleet) waitGone(pids []int) {
	f.t.Helper()
	waitfor.Cond(f.t, applyWait, func() error {
		for _, pid := range pids {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				return fmt.Errorf("xray (pid %d) still runs", pid)
			}
		}
		return nil
	})
}

// assertThreads checks the capability sets of every thread of pid.
func assertThreads(t *testing.T, pid int, want capability.Sets) {
	t.Helper()
	threads, err := capability.Threads(pid)
	if err != nil {
		t.Fatal(err)
	}
	for tid, got := range threads {
		if got != want {
			t.Errorf("thread %d of the agent: effective %s, permitted %s, inheritable %s, bounding %s, ambient %s, no_new_privs %v;\nwant effective %s, permitted %s, inheritable %s, bounding %s, ambient %s, no_new_privs %v",
				tid, got.Effective, got.Permitted, got.Inheritable, got.Bounding, got.Ambient, got.NoNewPrivs,
				want.Effective, want.Permitted, want.Inheritable, want.Bounding, want.Ambient, want.NoNewPrivs)
		}
	}
}
