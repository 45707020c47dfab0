package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// fakeAgent publishes what an agent would: its node entry and stats.
type fakeAgent struct {
	id string
	kv jetstream.KeyValue
	js jetstream.JetStream
}

func newFakeAgent(ctx context.Context, t testing.TB, js jetstream.JetStream, id string) *fakeAgent {
	kv, err := js.KeyValue(ctx, subject.BucketNodes)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeAgent{id: id, kv: kv, js: js}
}

func (f *fakeAgent) beat(ctx context.Context, at time.Time) error {
	data, _ := json.Marshal(node.Node{ID: f.id, State: node.StateRunning, HeartbeatAt: at, HeartbeatEvery: 5 * time.Second, Runtime: "process"})
	_, err := f.kv.Put(ctx, f.id, data)
	return err
}

func (f *fakeAgent) stats(ctx context.Context, at time.Time, cpu float64, workloads int) error {
	h := node.HostStats{Node: f.id, Time: at, CPUPercent: cpu, CPUs: 2, MemTotalBytes: 8 << 30, MemUsedBytes: 2 << 30,
		DiskTotal: 100 << 30, DiskUsed: 10 << 30, NetRxBytes: uint64(at.Unix()) * 1000, NetTxBytes: uint64(at.Unix()) * 2000}
	if _, err := bus.Publish(ctx, f.js, subject.HostStats(f.id), fmt.Sprintf("%s:host:%d", f.id, at.UnixMilli()), h); err != nil {
		return err
	}
	for i := range workloads {
		name := fmt.Sprintf("%s-srv%d", f.id, i)
		w := node.WorkloadStats{Node: f.id, Workload: name, Name: name, Time: at, CPUPercent: 1, MemoryBytes: 50 << 20, NetRxBytes: uint64(at.Unix()), NetTxBytes: uint64(at.Unix())}
		if _, err := bus.Publish(ctx, f.js, subject.WorkloadStats(f.id, name), fmt.Sprintf("%s:%s:%d", f.id, name, at.UnixMilli()), w); err != nil {
			return err
		}
	}
	return nil
}

// TestMalformedStatsAndUsageAreTerminated: garbage on STATS and USAGE is
// terminated with a logged reason; the consumers go on with the next
// message.
func TestMalformedStatsAndUsageAreTerminated(t *testing.T) {
	ns := natstest.Start(t)
	ctx := ctxT(t)
	h := startHealth(t, ns, testConfig(""))
	js := ns.JetStream()
	waitActive(t, h)
	a := newFakeAgent(ctx, t, js, "n1")
	if err := a.beat(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	bad := []struct{ subj, body string }{
		{subject.HostStats("n1"), `{not json`},
		{subject.HostStats("n1"), `[1,2]`},
		{subject.HostStats("n1"), `{"node":"other","time":"2026-01-01T00:00:00Z"}`},
		{subject.HostStats("n1"), `{"node":"n1","time":"2026-01-01T00:00:00Z","cpu_percent":-5}`},
		{subject.WorkloadStats("n1", "w"), `{"node":"n1"}`},
		{subject.Usage("n1"), `{"node":"n1","window":0}`},
		{subject.Usage("n1"), `{"node":"n1","window":3,"end":"2026-01-01T00:00:00Z","users":[{"user":"u 1","uplink":-1}]}`},
		{subject.Usage("n1"), `"just a string"`},
	}
	for i, b := range bad {
		if _, err := bus.PublishRaw(ctx, js, &nats.Msg{Subject: b.subj, Data: []byte(b.body)}, fmt.Sprintf("bad-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.stats(ctx, time.Now(), 95, 1); err != nil {
		t.Fatal(err)
	}
	good := usage.Record{Node: "n1", Window: 1, Start: time.Now().Add(-time.Second), End: time.Now(), Users: []usage.UserDelta{{User: "u1", Uplink: 10, Downlink: 20}}}
	if _, err := bus.Publish(ctx, js, subject.Usage("n1"), good.MsgID(), good); err != nil {
		t.Fatal(err)
	}
	settled := func(stream, name string) func() error {
		return func() error {
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				return err
			}
			info, err := c.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%s: pending %d, ack pending %d", name, info.NumPending, info.NumAckPending)
			}
			return nil
		}
	}
	waitfor.Cond(t, 30*time.Second, settled(subject.StreamStats, subject.ConsumerHealthStats))
	waitfor.Cond(t, 30*time.Second, settled(subject.StreamUsage, subject.ConsumerHealthUsage))
	if v, _ := gauge(h.env.Metrics, "vpnfleet_health_messages_total", map[string]string{"stream": "STATS", "result": "invalid"}); v != 4 {
		// The fifth, not JSON at all, is terminated by the bus adapter.
		t.Errorf("%v stats messages terminated by the handler, want 4", v)
	}
	if v, _ := gauge(h.env.Metrics, "vpnfleet_health_messages_total", map[string]string{"stream": "USAGE", "result": "invalid"}); v != 3 {
		t.Errorf("%v usage messages terminated, want 3", v)
	}
	// The good messages after the garbage were handled.
	waitfor.Cond(t, 30*time.Second, func() error {
		got, err := nodeHealth(ctx, h.env.NC, "n1")
		if err != nil {
			return err
		}
		if got.State != event.HealthDegraded {
			return fmt.Errorf("n1 is %s, want degraded by cpu", got.State)
		}
		return nil
	})
	if v, _ := gauge(h.env.Metrics, "vpnfleet_node_traffic_bytes_total", map[string]string{"node": "n1", "direction": "downlink"}); v != 20 {
		t.Errorf("downlink traffic %v, want 20", v)
	}
}

// TestReplicasFireOnce: two replicas share one fleet; one holds the lease
// and fires, the other takes over when it stops and resolves. Each
// transition is on EVENTS once.
func TestReplicasFireOnce(t *testing.T) {
	ns := natstest.Start(t)
	ctx := ctxT(t)
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, []byte(`
[[rule]]
name = "NodeDown"
metric = "node_down"
op = ">"
threshold = 0
severity = "critical"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	r1 := startHealth(t, ns, testConfig(rules))
	waitActive(t, r1)
	r2 := startHealth(t, ns, testConfig(rules))
	js := ns.JetStream()
	a := newFakeAgent(ctx, t, js, "n1")
	// A heartbeat from long ago: the node is down at once.
	if err := a.beat(ctx, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 30*time.Second, func() error {
		as, err := alertsOf(ctx, r2.env.NC, event.AlertsRequest{})
		if err != nil {
			return err
		}
		_, err = findAlert(as, "NodeDown", map[string]string{"node": "n1"})
		return err
	})
	if v, _ := gauge(r2.env.Metrics, "vpnfleet_health_active", nil); v != 0 {
		t.Fatal("both replicas active")
	}
	if err := r1.stop(); err != nil {
		t.Fatal(err)
	}
	waitActive(t, r2)
	// The new evaluator keeps beating fresh: it resolves what r1 fired.
	waitfor.Cond(t, 30*time.Second, func() error {
		if err := a.beat(ctx, time.Now()); err != nil {
			return err
		}
		as, err := alertsOf(ctx, r2.env.NC, event.AlertsRequest{Status: "resolved"})
		if err != nil {
			return err
		}
		_, err = findAlert(as, "NodeDown", map[string]string{"node": "n1"})
		return err
	})
	evs := natstest.Events(t, js, subject.AllAlertEvents)
	count := map[event.Type]int{}
	for _, e := range evs {
		count[e.Type]++
	}
	if count[event.AlertFiring] != 1 || count[event.AlertResolved] != 1 {
		t.Fatalf("alert events %v, want one firing and one resolved", count)
	}
	hev := natstest.Events(t, js, subject.HealthEvent("n1"))
	if len(hev) < 2 {
		t.Fatalf("%d health transitions, want down then healthy", len(hev))
	}
}

// waitActive waits until r holds the evaluator lease and its consumers run.
func waitActive(t *testing.T, r *running) {
	t.Helper()
	waitfor.Cond(t, 30*time.Second, func() error {
		if v, _ := gauge(r.env.Metrics, "vpnfleet_health_active", nil); v != 1 {
			return fmt.Errorf("replica not active")
		}
		_, err := r.env.JS.Consumer(context.Background(), subject.StreamUsage, subject.ConsumerHealthUsage)
		return err
	})
}
