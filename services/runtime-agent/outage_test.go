package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestOutageConvergesWithoutRestart stops the agent, makes 1,000 user
// changes (creates, disables, enables, deletes, credential rotations,
// protocol changes) and starts it again: the running Xray ends up holding
// exactly the desired users, with the new credentials, from the watch
// alone and without being restarted.
func TestOutageConvergesWithoutRestart(t *testing.T) {
	f := newFleet(t, "process")
	f.startAgent()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	target := xraytest.StartHTTPTarget(t)
	bin := xraytest.Binary(t)
	srv := f.createServer("edge", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)

	type want struct {
		active bool
		socks  bool
	}
	desired := map[string]want{}
	var ids []string
	for _, u := range f.createUsers(ctx, "before", 200) {
		desired[u.ID] = want{active: true, socks: true}
		ids = append(ids, u.ID)
	}
	expect := func() map[string][]string {
		out := map[string][]string{}
		for _, in := range srv.Inbounds {
			out[in.Tag] = []string{}
		}
		for id, w := range desired {
			if !w.active {
				continue
			}
			for _, in := range srv.Inbounds {
				if in.Protocol != user.SOCKS5 || w.socks {
					out[in.Tag] = append(out[in.Tag], id)
				}
			}
		}
		for tag := range out {
			slices.Sort(out[tag])
		}
		return out
	}
	converged := func() error {
		got, err := f.inboundUsers(srv)
		if err != nil {
			return err
		}
		exp := expect()
		for tag, ids := range exp {
			if !slices.Equal(got[tag], ids) {
				return fmt.Errorf("inbound %s holds %d users, want %d", tag, len(got[tag]), len(ids))
			}
		}
		return nil
	}
	waitfor.Cond(t, 2*time.Minute, converged)

	rotated := ids[0]
	oldLink := f.links(rotated, srv.ID)[user.SOCKS5]
	oldClient := xraytest.StartClient(t, bin, outbound(t, oldLink))
	connects(t, oldClient, target, "a user before rotation")
	before, err := f.agentRuntime().Inspect(ctx, server.WorkloadName(srv.ID))
	if err != nil {
		t.Fatal(err)
	}

	f.stop()

	// 1,000 changes while the node is offline.
	var ops []func() error
	call := func(endpoint string, req any) func() error {
		return func() error {
			_, err := bus.Request[json.RawMessage](ctx, f.nc, subject.UsersCmd(endpoint), req)
			return err
		}
	}
	noSocks := []user.Protocol{user.VLESSReality, user.Shadowsocks2022, user.HTTP}
	for i, id := range ids {
		switch {
		case i < 100: // rotate: every credential changes
			ops = append(ops, call(subject.UsersRotate, user.RotateRequest{ID: id}))
		case i < 150:
			ops = append(ops, call(subject.UsersDelete, user.RevisionRequest{ID: id}))
			delete(desired, id)
		case i < 200: // disable; half enabled again below
			ops = append(ops, call(subject.UsersDisable, user.RevisionRequest{ID: id}))
			desired[id] = want{socks: true}
		}
	}
	for _, id := range ids[150:175] {
		ops = append(ops, call(subject.UsersEnable, user.RevisionRequest{ID: id}))
		desired[id] = want{active: true, socks: true}
	}
	// Sequenced: the enables depend on the disables.
	runOps(t, ops[:200])
	runOps(t, ops[200:])
	n := len(ops)
	var more []func() error
	for _, id := range ids[1:100] {
		more = append(more, func() error {
			_, err := bus.Request[user.User](ctx, f.nc, subject.UsersCmd(subject.UsersUpdate), user.UpdateRequest{ID: id, Protocols: &noSocks})
			return err
		})
		desired[id] = want{active: true}
	}
	runOps(t, more)
	n += len(more)
	created := f.createUsers(ctx, "during", 1000-n)
	for _, u := range created {
		desired[u.ID] = want{active: true, socks: true}
	}
	n += len(created)
	if n != 1000 {
		t.Fatalf("%d changes made, want 1000", n)
	}

	start := time.Now()
	f.startAgent()
	waitfor.Cond(t, 2*time.Minute, converged)
	t.Logf("converged after %d changes while offline in %s", n, time.Since(start).Round(time.Millisecond))

	after, err := f.agentRuntime().Inspect(ctx, server.WorkloadName(srv.ID))
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != before.ID || !after.StartedAt.Equal(before.StartedAt) || after.PID != before.PID || after.RestartCount != before.RestartCount {
		t.Fatalf("xray restarted: before %s pid %d started %s restarts %d, after %s pid %d started %s restarts %d",
			before.ID, before.PID, before.StartedAt, before.RestartCount, after.ID, after.PID, after.StartedAt, after.RestartCount)
	}
	// Credentials changed offline are the ones Xray now holds.
	refused(t, oldClient, target, "a rotated user's old credentials")
	newClient := xraytest.StartClient(t, bin, outbound(t, f.links(rotated, srv.ID)[user.SOCKS5]))
	connects(t, newClient, target, "a rotated user's new credentials")
}

// createUsers creates n users named prefix-<i> through the registry, a few
// at a time.
func (f *fleet) createUsers(ctx context.Context, prefix string, n int) []user.User {
	f.t.Helper()
	out := make([]user.User, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			u, err := bus.Request[user.User](gctx, f.nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: fmt.Sprintf("%s-%d", prefix, i)})
			out[i] = u
			return err
		})
	}
	if err := g.Wait(); err != nil {
		f.t.Fatalf("creating users: %v", err)
	}
	return out
}

func runOps(t testing.TB, ops []func() error) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(8)
	for _, op := range ops {
		g.Go(op)
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("changing users: %v", err)
	}
}
