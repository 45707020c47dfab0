package health_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// outage is how long the webhook receiver stays down in the component
// test; -long makes it the full minute.
var (
	outage = flag.Duration("outage", 2*time.Second, "how long the webhook receiver is down in TestFleetHealthWithRealAgent")
	long   = flag.Bool("long", false, "run the long variants (a one-minute receiver outage)")
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const rulesForTest = `
[[rule]]
name = "NodeDown"
metric = "node_down"
op = ">"
threshold = 0
severity = "critical"
summary = "node {{node}} is down"

[[rule]]
name = "ServerDown"
metric = "workload_down"
op = ">"
threshold = 0
for = "200ms"
severity = "critical"
summary = "server {{workload}} on {{node}} is down"

[[notifier]]
name = "ops"
kind = "webhook"
url = "%s"
secret = "s3cret"
`

// TestFleetHealthWithRealAgent is the component test of the issue: a real
// agent (process runtime) with a real workload, health through Run, a
// webhook receiver that is down while the first alert fires.
func TestFleetHealthWithRealAgent(t *testing.T) {
	if *long {
		*outage = time.Minute
	}
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), *outage+2*time.Minute)
	t.Cleanup(cancel)
	rcv := newReceiver(t, "s3cret")
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, rulesForTest, rcv.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHealth(t, ns, testConfig(rules))
	nc := ns.Conn()
	js, _ := jetstream.New(nc)

	// A real agent on its own connection, so it can be cut off like a
	// crashed host.
	agentNC := ns.Conn()
	agentJS, _ := jetstream.New(agentNC)
	acfg := agent.DefaultConfig()
	acfg.NodeID = randomName("hnode")
	acfg.Runtime = "process"
	acfg.Heartbeat = 100 * time.Millisecond
	acfg.StatsInterval = 200 * time.Millisecond
	env := svc.Env{NC: agentNC, JS: agentJS, Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: t.TempDir()}
	actx, acancel := context.WithCancel(context.Background())
	a, err := agent.New(actx, acfg, env, nil)
	if err != nil {
		acancel()
		t.Fatal(err)
	}
	rt := a.Runtime()
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	var stopOnce sync.Once
	stopAgent := func() {
		stopOnce.Do(func() {
			acancel()
			if err := <-adone; err != nil {
				t.Errorf("agent run: %v", err)
			}
		})
	}
	t.Cleanup(func() { rt.Close() })
	t.Cleanup(stopAgent)
	id := acfg.NodeID

	waitState := func(want string, check func(event.NodeHealth) error) event.NodeHealth {
		t.Helper()
		var got event.NodeHealth
		waitfor.Cond(t, 30*time.Second, func() error {
			var err error
			if got, err = nodeHealth(ctx, nc, id); err != nil {
				return err
			}
			if got.State != want {
				return fmt.Errorf("node %s is %s (%s), want %s", id, got.State, got.Reason, want)
			}
			if check != nil {
				return check(got)
			}
			return nil
		})
		return got
	}
	waitState(event.HealthHealthy, nil)

	// A server workload runs.
	name := randomName("hsrv")
	wid, err := create(ctx, rt.Create, map[string]any{"Name": name, "Image": workloadBinary(t), "Env": map[string]string{"WORKLOAD_LINES": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Remove(context.Background(), wid) })
	if err := rt.Start(ctx, wid); err != nil {
		t.Fatal(err)
	}
	running := func(h event.NodeHealth) error {
		for _, w := range h.Workloads {
			if w.Name == name && w.State == event.WorkloadRunning {
				return nil
			}
		}
		return fmt.Errorf("workload %s not running in %+v", name, h.Workloads)
	}
	waitState(event.HealthHealthy, running)
	waitfor.Cond(t, 30*time.Second, func() error {
		if v, _ := gauge(h.env.Metrics, "vpnfleet_container_memory_bytes", map[string]string{"node": id, "workload": name}); v == 0 {
			return errors.New("no workload stats yet")
		}
		return nil
	})

	serverDown := map[string]string{"node": id, "workload": name}
	var firing event.Alert
	t.Run("killing the workload degrades the node and fires an alert", func(t *testing.T) {
		rcv.down()
		w, err := rt.Inspect(ctx, wid)
		if err != nil || w.PID == 0 {
			t.Fatalf("inspect: %+v %v", w, err)
		}
		if err := syscall.Kill(w.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		got := waitState(event.HealthDegraded, nil)
		if got.Reason == "" {
			t.Fatal("degraded without a reason")
		}
		waitfor.Cond(t, 30*time.Second, func() error {
			as, err := alertsOf(ctx, nc, event.AlertsRequest{Node: id})
			if err != nil {
				return err
			}
			firing, err = findAlert(as, "ServerDown", serverDown)
			return err
		})
		if firing.Status != event.AlertFiringStatus || firing.Severity != event.SeverityCritical || firing.Seq != 1 {
			t.Fatalf("alert %+v", firing)
		}
	})

	t.Run("the receiver gets the alert once it is back", func(t *testing.T) {
		// Stay down for the outage, and at least until the notifier has
		// failed a few deliveries.
		waitfor.Cond(t, *outage+30*time.Second, func() error {
			retries, _ := gauge(h.env.Metrics, "vpnfleet_health_notifications_total", map[string]string{"notifier": "ops", "result": "retry"})
			if retries < 2 || time.Since(rcv.downAt) < *outage {
				return fmt.Errorf("%v retries so far: %w", retries, errNotYet)
			}
			return nil
		})
		rcv.up()
		waitfor.Cond(t, 30*time.Second, func() error {
			if rcv.has(firing.EventID()) == 0 {
				return fmt.Errorf("firing %s not delivered", firing.EventID())
			}
			return nil
		})
	})

	t.Run("restarting the workload resolves the alert", func(t *testing.T) {
		if _, err := bus.Request[node.Workload](ctx, nc, subject.AgentCmd(id, node.CmdRestart), node.WorkloadRequest{Workload: name}); err != nil {
			t.Fatal(err)
		}
		waitState(event.HealthHealthy, running)
		resolved := firing
		resolved.Status = event.AlertResolvedStatus
		waitfor.Cond(t, 30*time.Second, func() error {
			if rcv.has(resolved.EventID()) == 0 {
				return fmt.Errorf("resolution %s not delivered", resolved.EventID())
			}
			return nil
		})
		as, err := alertsOf(ctx, nc, event.AlertsRequest{Status: "resolved"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := findAlert(as, "ServerDown", serverDown); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a stopped agent is down after the grace", func(t *testing.T) {
		// Cut the agent off first, as a crash would: it cannot say it
		// stopped, so only the missing heartbeat tells.
		agentNC.Close()
		stopAgent()
		got := waitState(event.HealthDown, nil)
		if age := got.UpdatedAt.Sub(got.HeartbeatAt); age < 2*time.Second {
			t.Fatalf("down %s after the last heartbeat, before the 2s grace", age)
		}
		waitfor.Cond(t, 30*time.Second, func() error {
			as, err := alertsOf(ctx, nc, event.AlertsRequest{Node: id})
			if err != nil {
				return err
			}
			a, err := findAlert(as, "NodeDown", map[string]string{"node": id})
			if err != nil {
				return err
			}
			if rcv.has(a.EventID()) == 0 {
				return errors.New("node down alert not delivered")
			}
			return nil
		})
		if v, _ := gauge(h.env.Metrics, "vpnfleet_nodes", map[string]string{"state": "down"}); v != 1 {
			t.Fatalf("vpnfleet_nodes{state=down} = %v, want 1", v)
		}
	})

	t.Run("every alert event reached the receiver exactly once", func(t *testing.T) {
		evs := natstest.Events(t, js, subject.AllAlertEvents)
		if len(evs) < 3 {
			t.Fatalf("%d alert events, want at least 3 (fired, resolved, node down)", len(evs))
		}
		waitfor.Cond(t, 30*time.Second, func() error {
			got, _ := rcv.snapshot()
			for _, e := range evs {
				if got[e.ID] == 0 {
					return fmt.Errorf("event %s not delivered", e.ID)
				}
			}
			return nil
		})
		got, bad := rcv.snapshot()
		if bad != 0 {
			t.Fatalf("%d deliveries with a bad signature or body", bad)
		}
		for id, n := range got {
			if n != 1 {
				t.Errorf("event %s delivered %d times", id, n)
			}
			if !slices.ContainsFunc(evs, func(e event.Envelope) bool { return e.ID == id }) {
				t.Errorf("delivered %s, which is not on EVENTS", id)
			}
		}
	})

	t.Run("history holds the node's points", func(t *testing.T) {
		reply, err := bus.Request[event.StatsReply](ctx, nc, subject.HealthCmd(subject.HealthStats),
			event.StatsRequest{Node: id, From: time.Now().Add(-5 * time.Minute), Step: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if reply.Resolution != subject.ResolutionFine || len(reply.Points) == 0 {
			t.Fatalf("stats reply %+v", reply)
		}
		var withWorkload bool
		for _, p := range reply.Points {
			if p.Samples > 0 && p.MemTotal == 0 {
				t.Fatalf("point without memory total: %+v", p)
			}
			withWorkload = withWorkload || slices.ContainsFunc(p.Workloads, func(w event.WorkloadPoint) bool { return w.Name == name && w.MemMax > 0 })
		}
		if !withWorkload {
			t.Fatal("no point carries the workload's stats")
		}
	})
}
