package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// putUsers writes n active users placed on every node straight into the
// users bucket (as the registry stores them; several writers at once) and
// waits until the node's view holds them; call it before the agent starts. It returns their ids, sorted.
func (f *fleet) putUsers(n int) []string {
	f.t.Helper()
	f.enroll()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketUsers)
	if err != nil {
		f.t.Fatal(err)
	}
	ids := make([]string, n)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				u := benchUser(f.t, i)
				data, _ := json.Marshal(u)
				if _, err := kv.Put(context.Background(), u.ID, data); err != nil {
					errc <- err
					return
				}
				ids[i] = u.ID
			}
		})
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		f.t.Fatalf("writing users: %v", err)
	}
	f.waitView(n)
	slices.Sort(ids)
	return ids
}

// xrayClient is a client of the server's Xray API with the default limits,
// found through the spec the agent deployed (it works while no agent runs).
func (f *fleet) xrayClient(id string) *xray.Client {
	f.t.Helper()
	data, err := os.ReadFile(filepath.Join(f.dataDir, "xray", id, "deployed.json"))
	if err != nil {
		f.t.Fatal(err)
	}
	var dep struct {
		Spec xray.Spec `json:"spec"`
	}
	if err := json.Unmarshal(data, &dep); err != nil {
		f.t.Fatal(err)
	}
	c, err := xray.NewClient(dep.Spec.APIListen, natstest.Logger(f.t))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = c.Close() })
	return c
}

// holdsExactly fails unless every inbound of s in Xray holds exactly ids.
func holdsExactly(ctx context.Context, c *xray.Client, s server.Server, ids []string) error {
	for _, in := range s.Inbounds {
		got, err := c.InboundUsers(ctx, xray.Inbound{Tag: in.Tag, Protocol: xray.Protocol(in.Protocol)})
		if err != nil {
			return err
		}
		if !slices.Equal(got, ids) {
			return fmt.Errorf("inbound %s holds %d users, want exactly the %d desired", in.Tag, len(got), len(ids))
		}
	}
	return nil
}

// waitUsersApplied waits until the server's status is applied with n of n
// users, written after since, and returns it.
func (f *fleet) waitUsersApplied(id string, n int, since time.Time, within time.Duration) server.Status {
	f.t.Helper()
	var st server.Status
	waitfor.Cond(f.t, within, func() error {
		s, err := f.getServer(id)
		if err != nil {
			return err
		}
		st = s.Status
		if st.State != server.StateApplied || st.UsersApplied != n || st.UsersDesired != n || st.UsersExtra != 0 || st.Time.Before(since) {
			return fmt.Errorf("status %s, %d of %d users (%d extra) at %s (%s), want applied %d of %d after %s",
				st.State, st.UsersApplied, st.UsersDesired, st.UsersExtra, st.Time.Format(time.RFC3339Nano), st.Reason, n, n, since.Format(time.RFC3339Nano))
		}
		return nil
	})
	return st
}

// TestInboundsPastOneReply fills every inbound of a server with more
// users than one reply at the agent's first receive limit can carry (16
// KiB here: 1,500 users are about 150 KB per inbound; in production 4 MiB,
// which 75,000 VLESS users exceed) and shows Xray holding exactly the
// desired users and the status applied n of n. Then, with the agent
// stopped and Xray running, a user is removed from Xray behind its back:
// the restarted agent's drift check lists the inbounds past the limit
// again, finds the user missing and adds it back, without restarting Xray.
func TestInboundsPastOneReply(t *testing.T) {
	f := newFleet(t, "process")
	f.firstReply = 16 << 10
	const n = 1500
	ids := f.putUsers(n)
	f.startAgent()
	srv := f.testServer("big", xraytest.StartTLSDest(t, sni))
	f.putServer(srv)
	f.waitUsersApplied(srv.ID, n, time.Time{}, applyWait)
	c := f.xrayClient(srv.ID)
	if err := holdsExactly(f.ctx(), c, srv, ids); err != nil {
		t.Fatal(err)
	}
	w, err := f.agentRuntime().Inspect(f.ctx(), server.WorkloadName(srv.ID))
	if err != nil {
		t.Fatal(err)
	}

	f.stop()
	vless := xray.Inbound{Tag: "vless", Protocol: xray.VLESSReality}
	if err := c.RemoveUser(f.ctx(), vless, ids[n/2]); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	f.startAgent()
	f.waitUsersApplied(srv.ID, n, restarted, applyWait)
	waitfor.Cond(t, convergeFor, func() error { return holdsExactly(f.ctx(), c, srv, ids) })
	after, err := f.agentRuntime().Inspect(f.ctx(), server.WorkloadName(srv.ID))
	if err != nil {
		t.Fatal(err)
	}
	if after.PID != w.PID || !after.StartedAt.Equal(w.StartedAt) {
		t.Fatalf("xray was restarted (pid %d → %d)", w.PID, after.PID)
	}
}

// BenchmarkOneInbound100k puts 100,000 users on one VLESS inbound of a
// real Xray (process runtime): "empty" is the time from the server's
// creation until its status says applied, 100,000 of 100,000 (every user
// added through the API, no restart); "restart" the time from an agent
// restart (Xray keeps running) until the new agent has adopted it, listed
// the inbound's users (a 10 MB reply) and reported applied again.
func BenchmarkOneInbound100k(b *testing.B) {
	const n = 100_000
	var empty, restart float64
	for range b.N {
		f := newFleet(b, "process")
		ids := f.putUsers(n)
		f.startAgent()
		srv := f.testServer("one", xraytest.StartTLSDest(b, sni))
		srv.Inbounds = srv.Inbounds[:1] // vless
		start := time.Now()
		f.putServer(srv)
		f.waitUsersApplied(srv.ID, n, start, 10*time.Minute)
		empty += time.Since(start).Seconds()
		c := f.xrayClient(srv.ID)
		if err := holdsExactly(f.ctx(), c, srv, ids); err != nil {
			b.Fatal(err)
		}
		f.stop()
		start = time.Now()
		f.startAgent()
		f.waitUsersApplied(srv.ID, n, start, 10*time.Minute)
		restart += time.Since(start).Seconds()
		if err := holdsExactly(f.ctx(), c, srv, ids); err != nil {
			b.Fatal(err)
		}
		f.stop()
	}
	b.ReportMetric(empty/float64(b.N), "s-from-empty")
	b.ReportMetric(restart/float64(b.N), "s-after-restart")
}
