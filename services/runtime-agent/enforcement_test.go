package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// The protocols of the fleet's test server, in the order tests use them.
var protocols = []user.Protocol{user.VLESSReality, user.Shadowsocks2022, user.SOCKS5, user.HTTP}

// dialers returns a real client of user u per protocol on server srv,
// from the links the registry hands out (see dialersFor).
func (f *fleet) dialers(u user.User, srv server.Server) map[user.Protocol]xraytest.DialFunc {
	f.t.Helper()
	out := map[user.Protocol]xraytest.DialFunc{}
	for _, p := range protocols {
		out[p] = f.dialersFor([]user.User{u}, srv, p)[0]
	}
	return out
}

// downloads starts one download of path per protocol.
func downloads(t *testing.T, dial map[user.Protocol]xraytest.DialFunc, target, path string) map[user.Protocol]*xraytest.Download {
	t.Helper()
	out := map[user.Protocol]*xraytest.Download{}
	for _, p := range protocols {
		out[p] = xraytest.StartDownload(t, dial[p], target, path)
	}
	return out
}

// carried is what the downloads moved through the tunnel: requests up,
// everything received down.
func carried(ds map[user.Protocol]*xraytest.Download) (up, down int64) {
	for _, d := range ds {
		up += int64(len(d.Request))
		down += d.Received()
	}
	return up, down
}

// waitFlowing waits until every download has received at least n bytes.
func waitFlowing(t *testing.T, ds map[user.Protocol]*xraytest.Download, n int64) {
	t.Helper()
	waitfor.Cond(t, 30*time.Second, func() error {
		for p, d := range ds {
			select {
			case <-d.Done():
				t.Fatalf("%s download ended early: %v", p, d.Err())
			default:
			}
			if d.Received() < n {
				return fmt.Errorf("%s download at %d bytes", p, d.Received())
			}
		}
		return nil
	})
}

// waitCut waits until every download has ended without completing and
// returns when each ended, measured from since.
func waitCut(t *testing.T, ds map[user.Protocol]*xraytest.Download, since time.Time) map[user.Protocol]time.Duration {
	t.Helper()
	out := map[user.Protocol]time.Duration{}
	for _, p := range protocols {
		select {
		case <-ds[p].Done():
			out[p] = ds[p].Ended().Sub(since)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the connection still runs %s after the user lost access (%d bytes)", p, time.Since(since), ds[p].Received())
		}
		if ds[p].Err() == nil {
			t.Fatalf("%s: a download of a user who lost access completed", p)
		}
	}
	return out
}

// nodeRecord reads the fleet node's record from the nodes bucket.
func (f *fleet) nodeRecord() (node.Node, error) {
	var n node.Node
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketNodes)
	if err != nil {
		return n, err
	}
	e, err := kv.Get(f.ctx(), f.node)
	if err != nil {
		return n, err
	}
	return n, json.Unmarshal(e.Value(), &n)
}

// waitCapabilities waits until the node record lists every capability in
// want.
func (f *fleet) waitCapabilities(want ...string) {
	f.t.Helper()
	waitfor.Cond(f.t, 30*time.Second, func() error {
		n, err := f.nodeRecord()
		if err != nil {
			return err
		}
		for _, c := range want {
			if !slices.Contains(n.Capabilities, c) {
				return fmt.Errorf("node capabilities %v lack %s", n.Capabilities, c)
			}
		}
		return nil
	})
}

// waitXrayHas waits until every inbound of s holds the users ids (and
// maybe others).
func (f *fleet) waitXrayHas(s server.Server, ids ...string) {
	f.t.Helper()
	waitfor.Cond(f.t, xrayWait, func() error {
		held, err := f.inboundUsers(s)
		if err != nil {
			return err
		}
		for tag, got := range held {
			for _, id := range ids {
				if !slices.Contains(got, id) {
					return fmt.Errorf("inbound %s lacks user %s", tag, id)
				}
			}
		}
		return nil
	})
}

// createUserWith creates a user from req through the registry.
func (f *fleet) createUserWith(req user.CreateRequest) user.User {
	f.t.Helper()
	u, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersCreate), req)
	if err != nil {
		f.t.Fatalf("creating user %s: %v", req.Name, err)
	}
	return u
}

// usageOf is the registry's count of user id's traffic.
func (f *fleet) usageOf(id string) (user.User, error) {
	return bus.Request[user.User](context.Background(), f.nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: id})
}

// TestLimitsBite: a user who stops being allowed on a node loses the
// connections it has open, on every protocol, whatever the reason
// (disabled, deleted, credentials rotated, expired, over quota), while
// another user's downloads on the same server run to their last byte. A
// cut user cannot come back, and the registry counts exactly what its
// connections carried. Real clients, a real agent, the registry, vpn-xray.
func TestLimitsBite(t *testing.T) {
	f := newFleet(t, "process")
	f.usage = 250 * time.Millisecond
	f.startAgent()
	f.waitCapabilities(agent.CapCutSessions, agent.CapLiveUsage)
	// Bad cut requests name the field; cutting users without sessions is a
	// no-op that succeeds.
	for _, users := range [][]string{nil, {""}, make([]string, node.MaxCutUsers+1)} {
		_, err := bus.Request[node.CutSessionsReply](f.ctx(), f.nc, subject.AgentCmd(f.node, node.CmdCutSessions), node.CutSessionsRequest{Users: users})
		if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) != 1 || errs.FieldsOf(err)[0].Field != "users" {
			t.Fatalf("cut_sessions of %d users: %v; want an invalid users field", len(users), err)
		}
	}
	if reply, err := bus.Request[node.CutSessionsReply](f.ctx(), f.nc, subject.AgentCmd(f.node, node.CmdCutSessions), node.CutSessionsRequest{Users: []string{"nobody"}}); err != nil || reply.Closed != 0 {
		t.Fatalf("cut_sessions of a user without sessions = %+v, %v", reply, err)
	}
	srv := f.createServer("enforced", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	target := xraytest.StartHTTPTarget(t)

	const quota = 10_000_000
	cases := []struct {
		name   string
		create user.CreateRequest
		// act takes the user's access away and returns when it did (the
		// moment the registry was told, or the expiry).
		act func(u user.User) time.Time
		// counted: the user still exists, so its usage can be checked.
		counted bool
		// allowed: the user may connect again after the cut.
		allowed bool
	}{
		{name: "disable", counted: true, act: func(u user.User) time.Time {
			f.userCmd(subject.UsersDisable, u.ID)
			return time.Now()
		}},
		{name: "delete", act: func(u user.User) time.Time {
			f.userCmd(subject.UsersDelete, u.ID)
			return time.Now()
		}},
		{name: "rotate", counted: true, act: func(u user.User) time.Time {
			if _, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersRotate), user.RotateRequest{ID: u.ID}); err != nil {
				t.Fatalf("rotating: %v", err)
			}
			return time.Now()
		}},
		{name: "expire", counted: true, act: func(u user.User) time.Time {
			at := time.Now().Add(500 * time.Millisecond)
			if _, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersUpdate), user.UpdateRequest{ID: u.ID, ExpiresAt: &at}); err != nil {
				t.Fatalf("setting the expiry: %v", err)
			}
			return at
		}},
		{name: "quota", counted: true, create: user.CreateRequest{TrafficLimitBytes: quota}},
		{name: "move", counted: true, act: func(u user.User) time.Time {
			elsewhere := user.Placement{Nodes: []string{"elsewhere"}}
			if _, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersUpdate), user.UpdateRequest{ID: u.ID, Placement: &elsewhere}); err != nil {
				t.Fatalf("moving the user to another node: %v", err)
			}
			return time.Now()
		}},
		// An operator ends the user's sessions without changing the user
		// (the agent command the gateway's POST /users/{user}/sessions/cut
		// sends to every node that is up).
		{name: "kick", counted: true, allowed: true, act: func(u user.User) time.Time {
			asked := time.Now()
			reply, err := bus.Request[node.CutSessionsReply](f.ctx(), f.nc, subject.AgentCmd(f.node, node.CmdCutSessions), node.CutSessionsRequest{Users: []string{u.ID}})
			if err != nil || reply.Closed != len(protocols) || len(reply.Unsupported) > 0 {
				t.Fatalf("cut_sessions = %+v, %v; want %d sessions closed", reply, err, len(protocols))
			}
			return asked
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := c.create
			req.Name = "victim-" + c.name
			victim := f.createUserWith(req)
			bystander := f.createUser("bystander-" + c.name)
			f.waitXrayHas(srv, victim.ID, bystander.ID)
			vd, bd := f.dialers(victim, srv), f.dialers(bystander, srv)

			// 100 Mbit/s in all for the victim (a quota is crossed mid-way),
			// and 12 MB per protocol for the bystander, still running when
			// the victim is cut.
			victimDL := downloads(t, vd, target, "/stream?n=4294967296&rate=3125000")
			const bystanderBytes = 12_000_000
			bystanderDL := downloads(t, bd, target, fmt.Sprintf("/stream?n=%d&rate=3000000", bystanderBytes))
			waitFlowing(t, victimDL, 256<<10)

			var since time.Time
			if c.act != nil {
				since = c.act(victim)
			} else {
				// The quota: counted while it flows, so it is crossed while
				// the downloads run; the cut is timed from the crossing.
				waitfor.Cond(t, 60*time.Second, func() error {
					if _, down := carried(victimDL); down < quota {
						return fmt.Errorf("victim at %d bytes", down)
					}
					return nil
				})
				since = time.Now()
			}
			took := waitCut(t, victimDL, since)
			up, down := carried(victimDL)
			t.Logf("%s: connections ended %v after the user lost access; carried %d bytes up, %d down", c.name, took, up, down)
			if c.act == nil {
				t.Logf("quota: %d bytes past the %d-byte quota (%.1f%%)", up+down-quota, quota, 100*float64(up+down-quota)/quota)
			}

			// The bystander's downloads are unharmed, to the last byte.
			for p, d := range bystanderDL {
				select {
				case <-d.Done():
				case <-time.After(60 * time.Second):
					t.Fatalf("bystander's %s download still running", p)
				}
				if err := d.Err(); err != nil {
					t.Fatalf("bystander's %s download: %v", p, err)
				}
			}

			if !c.allowed {
				// Coming back is refused every time, on every protocol, and no
				// byte passes (a user who is still allowed is tested below).
				for range 2 {
					for _, p := range protocols {
						d := xraytest.StartDownload(t, vd[p], target, "/stream?n=100000&rate=0")
						select {
						case <-d.Done():
						case <-time.After(3 * time.Second): // a Shadowsocks-2022 server stalls strangers
							d.Cancel()
						}
						if d.Err() == nil || d.Received() > 0 {
							t.Fatalf("%s: the cut user reconnected and got %d bytes (%v)", p, d.Received(), d.Err())
						}
					}
				}
			}

			// The registry counts what the connections carried: no byte
			// lost, none counted twice (the reconnects added nothing).
			if c.counted {
				waitfor.Cond(t, 30*time.Second, func() error {
					u, err := f.usageOf(victim.ID)
					if err != nil {
						return err
					}
					if u.Usage.UsedUp != up || u.Usage.UsedDown != down {
						return fmt.Errorf("registry counted %d up, %d down; the connections carried %d up, %d down", u.Usage.UsedUp, u.Usage.UsedDown, up, down)
					}
					return nil
				})
			}
			if c.allowed {
				// Still allowed: the user connects again on every protocol.
				for _, p := range protocols {
					d := xraytest.StartDownload(t, vd[p], target, "/stream?n=100000&rate=0")
					select {
					case <-d.Done():
					case <-time.After(30 * time.Second):
						t.Fatalf("%s: reconnecting still runs", p)
					}
					if err := d.Err(); err != nil {
						t.Fatalf("%s: a user who is still allowed cannot connect again: %v", p, err)
					}
				}
			}
		})
	}
}

// TestStockXrayIsDrivenAndReported: an agent whose Xray is the stock build
// still serves and removes users; its node record does not claim to end
// sessions, and a cut asked of it names the server that cannot.
func TestStockXrayIsDrivenAndReported(t *testing.T) {
	f := newFleet(t, "process")
	f.xrayBin = xraytest.StockBinary(t)
	f.startAgent()
	srv := f.createServer("stock", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	n, err := f.nodeRecord()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(n.Capabilities, agent.CapCutSessions) || slices.Contains(n.Capabilities, agent.CapLiveUsage) {
		t.Fatalf("a node on stock xray claims %v", n.Capabilities)
	}
	target := xraytest.StartHTTPTarget(t)
	u := f.createUser("stocky")
	f.waitXrayHas(srv, u.ID)
	client := xraytest.StartClient(t, xraytest.StockBinary(t), outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
	connects(t, client, target, "a user of a stock xray")
	reply, err := bus.Request[node.CutSessionsReply](f.ctx(), f.nc, subject.AgentCmd(f.node, node.CmdCutSessions), node.CutSessionsRequest{Users: []string{u.ID}})
	if err != nil || !slices.Equal(reply.Unsupported, []string{srv.ID}) {
		t.Fatalf("cut_sessions on stock xray = %+v, %v; want server %s named unsupported", reply, err, srv.ID)
	}
	f.userCmd(subject.UsersDisable, u.ID)
	refused(t, client, target, "a disabled user of a stock xray")
}
