package agent_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestServerLifecycle drives one server through what goes wrong and what
// changes, on the process runtime: bad specs and taken ports are reported
// (status and event) and leave the running Xray serving; a spec change
// converges; Xray killed behind the agent's back gets its users back;
// users added or removed behind its back are repaired by the drift check;
// deleting the server removes its workload and files.
func TestServerLifecycle(t *testing.T) {
	outer := t
	f := newFleet(t, "process")
	f.drift = time.Second
	f.startAgent()
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	bin := xraytest.Binary(t)

	srv := f.createServer("edge", dest)
	good := f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	u := f.createUser("bob")
	client := xraytest.StartClient(t, bin, outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
	connects(t, client, target, "bob")
	first, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	untouched := func(t *testing.T) {
		t.Helper()
		rs, err := f.running(srv.ID)
		if err != nil || rs.Instance != first.Instance {
			t.Fatalf("running xray changed: %+v, %v; was %s", rs, err, first.Instance)
		}
		connects(t, client, target, "bob on the untouched server")
	}

	t.Run("bad specs are reported and leave xray alone", func(t *testing.T) {
		tests := []struct {
			name   string
			break_ func(*server.Server)
			field  string
		}{
			{"invalid sni", func(s *server.Server) { s.Inbounds[0].Reality.ServerNames = []string{"not a name"} }, "inbounds[0].reality.server_names[0]"},
			{"invalid dest", func(s *server.Server) { s.Inbounds[0].Reality.Dest = "no-port" }, "inbounds[0].reality.dest"},
			{"invalid port", func(s *server.Server) { s.Inbounds[2].Port = 70000 }, "inbounds[2].port"},
			{"undecodable key", func(s *server.Server) { s.Inbounds[1].Shadowsocks.ServerKey = "not base64!" }, "inbounds[1].shadowsocks.key"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bad := cloneServer(t, good)
				tt.break_(&bad)
				rev := f.putServer(bad)
				s := f.waitStatus(srv.ID, 0, server.StateFailed)
				if !strings.Contains(s.Status.Reason, tt.field) {
					t.Fatalf("reason %q does not name %s", s.Status.Reason, tt.field)
				}
				if s.Status.AppliedRevision != good.Status.AppliedRevision {
					t.Fatalf("failed status says revision %d serves, want %d", s.Status.AppliedRevision, good.Status.AppliedRevision)
				}
				ev := f.waitEventAt(srv.ID, event.ServerFailed, rev)
				var p event.ServerStatus
				if err := ev.Decode(&p); err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(p.Fields, func(fe errs.FieldError) bool { return fe.Field == tt.field }) {
					t.Fatalf("event fields %+v do not name %s", p.Fields, tt.field)
				}
				untouched(t)
			})
		}
		// Taking the bad spec back is reported too.
		f.putServer(good)
		f.waitStatus(srv.ID, good.Status.AppliedRevision, server.StateApplied)
		untouched(t)
	})

	t.Run("a port taken on the host is reported", func(t *testing.T) {
		taken := listen(t)
		s, err := f.updateServer(srv.ID, inboundRequests(t, dest, map[string]int{
			"vless": good.Inbounds[0].Port, "ss": good.Inbounds[1].Port, "socks": taken, "http": good.Inbounds[3].Port,
		}))
		if err != nil {
			t.Fatal(err)
		}
		failed := f.waitStatus(srv.ID, 0, server.StateFailed)
		if !strings.Contains(failed.Status.Reason, fmt.Sprintf("port %d is in use", taken)) {
			t.Fatalf("reason %q does not say the port is in use", failed.Status.Reason)
		}
		f.waitEventAt(srv.ID, event.ServerFailed, s.Revision)
		untouched(t)
	})

	t.Run("a spec change converges", func(t *testing.T) {
		socks := xraytest.FreePort(t)
		s, err := f.updateServer(srv.ID, inboundRequests(t, dest, map[string]int{
			"vless": good.Inbounds[0].Port, "ss": good.Inbounds[1].Port, "socks": socks, "http": good.Inbounds[3].Port,
		}))
		if err != nil {
			t.Fatal(err)
		}
		f.waitStatus(srv.ID, s.Revision, server.StateApplied)
		moved := xraytest.StartClient(outer, bin, outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
		connects(t, moved, target, "bob on the new port")
		refused(t, client, target, "bob on the old port")
		client = moved
		rs, err := f.running(srv.ID)
		if err != nil {
			t.Fatal(err)
		}
		first = rs
	})

	t.Run("xray killed gets its users back", func(t *testing.T) {
		rt := f.agentRuntime()
		w, err := rt.Inspect(f.ctx(), server.WorkloadName(srv.ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitfor.Cond(t, convergeFor, func() error {
			rs, err := f.running(srv.ID)
			if err != nil {
				return err
			}
			if rs.Instance == first.Instance {
				return errors.New("still the killed instance")
			}
			first = rs
			return nil
		})
		connects(t, client, target, "bob after xray restarted")
	})

	t.Run("drift is repaired", func(t *testing.T) {
		rs, err := f.running(srv.ID)
		if err != nil {
			t.Fatal(err)
		}
		vless := xray.Inbound{Tag: "vless", Protocol: xray.VLESSReality}
		socks := xray.Inbound{Tag: "socks", Protocol: xray.SOCKS5}
		rogue := xray.User{ID: newID(t), UUID: newID(t)}
		if err := rs.Client.AddUser(f.ctx(), vless, rogue); err != nil {
			t.Fatal(err)
		}
		if err := rs.Client.RemoveUser(f.ctx(), socks, u.ID); err != nil {
			t.Fatal(err)
		}
		waitfor.Cond(t, convergeFor, func() error {
			got, err := f.inboundUsers(good)
			if err != nil {
				return err
			}
			if !slices.Equal(got["vless"], []string{u.ID}) || !slices.Equal(got["socks"], []string{u.ID}) {
				return fmt.Errorf("users %v, want only bob", got)
			}
			return nil
		})
		connects(t, client, target, "bob after drift repair")
		if rs2, _ := f.running(srv.ID); rs2.Instance != rs.Instance {
			t.Fatal("drift repair restarted xray")
		}
	})

	t.Run("a deleted server is removed", func(t *testing.T) {
		if _, err := f.deleteServerReq(srv.ID); err != nil {
			t.Fatal(err)
		}
		rt := f.agentRuntime()
		waitfor.Cond(t, convergeFor, func() error {
			if _, err := rt.Inspect(f.ctx(), server.WorkloadName(srv.ID)); !errors.Is(err, errs.NotFound) {
				return fmt.Errorf("workload still there: %v", err)
			}
			if _, err := os.Stat(filepath.Join(f.dataDir, "xray", srv.ID)); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("server files still there: %v", err)
			}
			return nil
		})
		refused(t, client, target, "bob on a deleted server")
	})
}

// TestStatusOnlyUpdateDoesNotRedeploy: the agent's own status write, and a
// rename, change the record but not the spec; neither redeploys.
func TestStatusOnlyUpdateDoesNotRedeploy(t *testing.T) {
	f := newFleet(t, "process")
	f.startAgent()
	srv := f.createServer("edge", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	rs, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	if _, err := f.renameServer(srv.ID, name); err != nil {
		t.Fatal(err)
	}
	// A change that does redeploy, after the rename, proves the agent saw
	// the rename's revision (it processes the watch in order).
	other, err := f.updateServer(srv.ID, inboundRequests(t, srv.Inbounds[0].Reality.Dest, nil))
	if err != nil {
		t.Fatal(err)
	}
	f.waitStatus(srv.ID, other.Revision, server.StateApplied)
	f.waitEventAt(srv.ID, event.ServerApplied, other.Revision)
	evs := f.serverEvents(srv.ID)
	applied := 0
	for _, e := range evs {
		if e.Type == event.ServerApplied {
			applied++
		}
	}
	if applied != 2 {
		t.Fatalf("%d server.applied events, want 2 (create, inbound change), not one per status write or rename", applied)
	}
	rs2, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rs2.Instance == rs.Instance {
		t.Fatal("the inbound change did not redeploy")
	}
}
