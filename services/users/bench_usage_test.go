package users_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkUsageWindow10k measures what one usage window of 10,000 active
// users costs the registry: the time from publishing the record to the
// last user's counters holding it, and the messages and bytes it adds to
// the users bucket, the usage bucket and the node views. Agents read the
// users bucket before the desired/observed split and their node's view
// after it, so those bytes are what every agent received. The streams are
// named by string so the same file runs against the release before the
// split.
func BenchmarkUsageWindow10k(b *testing.B) {
	const n = 10_000
	ns := natstest.Start(b)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := svc.Env{NC: nc, JS: js, Log: natstest.Logger(b), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	done := make(chan error, 1)
	go func() { done <- users.Run(ctx, users.Defaults(), env) }()
	b.Cleanup(func() { cancel(); <-done })
	rctx := context.Background()
	waitfor.Cond(b, time.Minute, func() error {
		_, err := bus.Request[user.CountResponse](rctx, nc, subject.UsersCmd(subject.UsersCount), user.Filter{})
		return err
	})
	ids := make([]string, 0, n)
	for i := range n {
		u, err := bus.Request[user.User](rctx, nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: benchName(i), Placement: &user.Placement{All: true}})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	// Writes: how far each bucket's stream moved.
	stat := func(stream string) uint64 {
		st, err := js.Stream(rctx, stream)
		if err != nil {
			return 0 // not in this release
		}
		info, err := st.Info(rctx)
		if err != nil {
			b.Fatal(err)
		}
		return info.State.LastSeq
	}
	// Bytes to agents: what a watch of the users bucket (every agent's,
	// before the split) and of one node's view (after it) receive.
	watched := func(bucket, filter string) func() uint64 {
		kv, err := js.KeyValue(rctx, bucket)
		if err != nil {
			return func() uint64 { return 0 }
		}
		w, err := kv.Watch(rctx, filter, jetstream.UpdatesOnly())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = w.Stop() })
		var total atomic.Uint64
		go func() {
			for e := range w.Updates() {
				if e != nil {
					total.Add(uint64(len(e.Key()) + len(e.Value())))
				}
			}
		}()
		return total.Load
	}
	usersBytes := watched("users", ">")
	viewBytes := watched("node_views", "bench.>")
	streams := []string{"KV_users", "KV_usage", "KV_node_views"}
	var took time.Duration
	var dm [3]uint64
	b.ResetTimer()
	for i := range b.N {
		var m0 [3]uint64
		for k, s := range streams {
			m0[k] = stat(s)
		}
		now := time.Now()
		rec := usage.Record{Node: "bench", Window: uint64(now.UnixMilli()), Start: now.Add(-10 * time.Second), End: now}
		for _, id := range ids {
			rec.Users = append(rec.Users, usage.UserDelta{User: id, Uplink: 1000, Downlink: 9000, LastSeen: now})
		}
		start := time.Now()
		if _, err := bus.Publish(rctx, js, subject.Usage(rec.Node), rec.MsgID(), rec); err != nil {
			b.Fatal(err)
		}
		last := ids[len(ids)-1]
		want := int64(i+1) * 1000
		waitfor.Cond(b, 10*time.Minute, func() error {
			u, err := bus.Request[user.User](rctx, nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: last})
			if err != nil {
				return err
			}
			if u.Usage.LifetimeUp != want {
				return errNotYet
			}
			return nil
		})
		// Every user of the record is applied before its message is
		// acknowledged; the consumer has nothing pending then.
		waitfor.Cond(b, 10*time.Minute, func() error {
			c, err := js.Consumer(rctx, subject.StreamUsage, subject.ConsumerUsersUsage)
			if err != nil {
				return err
			}
			info, err := c.Info(rctx)
			if err != nil {
				return err
			}
			if info.NumAckPending > 0 || info.NumPending > 0 {
				return errNotYet
			}
			return nil
		})
		took += time.Since(start)
		for k, s := range streams {
			dm[k] += stat(s) - m0[k]
		}
	}
	// The watches deliver what was written before the record was
	// acknowledged; wait until they have seen the last write.
	waitfor.Cond(b, time.Minute, func() error {
		if dm[0] > 0 && usersBytes() == 0 {
			return errNotYet
		}
		return nil
	})
	b.StopTimer()
	per := float64(b.N)
	b.ReportMetric(took.Seconds()/per, "s-window")
	b.ReportMetric(float64(dm[0])/per, "users-writes")
	b.ReportMetric(float64(dm[1])/per, "usage-writes")
	b.ReportMetric(float64(dm[2])/per, "view-writes")
	b.ReportMetric(float64(usersBytes())/per/(1<<20), "MB-users-watch")
	b.ReportMetric(float64(viewBytes())/per/(1<<20), "MB-view-watch")
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}

func benchName(i int) string {
	const digits = "0123456789"
	b := []byte("w00000")
	for k := len(b) - 1; k > 0 && i > 0; k-- {
		b[k] = digits[i%10]
		i /= 10
	}
	return string(b)
}
