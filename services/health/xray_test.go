package health_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

const restartRules = `
[[rule]]
name = "ServerRestarting"
metric = "workload_exits"
op = ">="
threshold = 3
severity = "warning"
summary = "server {{workload}} on node {{node}} exited {{value}} times in the restart window"

[[notifier]]
name = "ops"
kind = "webhook"
url = "%s"
secret = "s3cret"
`

// xrayBinary is the pinned Xray: $VPN_XRAY_BIN (make test sets it), else
// built from the runtime agent's module, which pins it.
func xrayBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("VPN_XRAY_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "xray")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xtls/xray-core/main")
	cmd.Dir = filepath.Join("..", "runtime-agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building xray: %v\n%s", err, out)
	}
	return bin
}

// TestCrashingXrayServerRaisesAndResolvesAnAlert deploys a real Xray
// server through the registry and a real agent, kills the Xray process
// three times (its restart policy brings it back each time), and expects
// the node degraded with a ServerRestarting alert delivered to the webhook,
// then healthy and the alert resolved once the restart window passes.
func TestCrashingXrayServerRaisesAndResolvesAnAlert(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	rcv := newReceiver(t, "s3cret")
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, restartRules, rcv.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(rules)
	cfg.RestartWindow = 3 * time.Second
	startHealth(t, ns, cfg)
	nc := ns.Conn()

	// The registry, for the servers endpoints.
	uenv := svc.Env{NC: ns.Conn(), Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	uenv.JS, _ = jetstream.New(uenv.NC)
	uctx, ucancel := context.WithCancel(context.Background())
	udone := make(chan error, 1)
	go func() { udone <- users.Run(uctx, users.Defaults(), uenv) }()
	t.Cleanup(func() { ucancel(); <-udone })

	// A real agent that runs Xray as a supervised process.
	aenv := svc.Env{NC: ns.Conn(), Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: t.TempDir()}
	aenv.JS, _ = jetstream.New(aenv.NC)
	acfg := agent.DefaultConfig()
	acfg.NodeID = randomName("xnode")
	acfg.Runtime = "process"
	acfg.PublicAddr = "127.0.0.1"
	acfg.Heartbeat = 100 * time.Millisecond
	acfg.StatsInterval = 200 * time.Millisecond
	acfg.XrayBin = xrayBinary(t)
	actx, acancel := context.WithCancel(context.Background())
	a, err := agent.New(actx, acfg, aenv, nil)
	if err != nil {
		acancel()
		t.Fatal(err)
	}
	rt := a.Runtime()
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() {
		acancel()
		<-adone
		// Xray outlives its agent by design; the test must not leave it.
		if ws, err := rt.List(context.Background()); err == nil {
			for _, w := range ws {
				_ = rt.Remove(context.Background(), w.ID)
			}
		}
		rt.Close()
	})
	id := acfg.NodeID

	var srv server.Server
	port := freeTCPPort(t)
	waitfor.Cond(t, 30*time.Second, func() error { // until the registry answers
		srv, err = bus.Request[server.Server](ctx, nc, subject.ServersCmd(subject.ServersCreate), server.CreateRequest{
			Node: id, Name: "edge", Inbounds: []server.InboundRequest{{Protocol: user.SOCKS5, Port: port, Listen: "127.0.0.1"}}})
		return err
	})
	waitfor.Cond(t, 60*time.Second, func() error {
		got, err := bus.Request[server.Server](ctx, nc, subject.ServersCmd(subject.ServersGet), server.GetRequest{ID: srv.ID})
		if err != nil {
			return err
		}
		if got.Status.State != server.StateApplied {
			return fmt.Errorf("server %s", got.Status.State)
		}
		return nil
	})

	workload := server.WorkloadName(srv.ID)
	lastPID := 0
	for i := range 3 {
		var pid int
		waitfor.Cond(t, 30*time.Second, func() error {
			w, err := rt.Inspect(ctx, workload)
			if err != nil {
				return err
			}
			if w.PID == 0 || w.PID == lastPID {
				return fmt.Errorf("xray not running again yet (crash %d)", i)
			}
			pid = w.PID
			return nil
		})
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		lastPID = pid
	}

	labels := map[string]string{"node": id, "workload": workload}
	var firing event.Alert
	waitfor.Cond(t, 30*time.Second, func() error {
		h, err := nodeHealth(ctx, nc, id)
		if err != nil {
			return err
		}
		if h.State != event.HealthDegraded {
			return fmt.Errorf("node %s (%s), want degraded", h.State, h.Reason)
		}
		as, err := alertsOf(ctx, nc, event.AlertsRequest{Node: id})
		if err != nil {
			return err
		}
		if firing, err = findAlert(as, "ServerRestarting", labels); err != nil {
			return err
		}
		if rcv.has(firing.EventID()) == 0 {
			return fmt.Errorf("firing %s not delivered", firing.EventID())
		}
		return nil
	})

	// No more crashes: once the restart window passes, healthy and resolved.
	resolved := firing
	resolved.Status = event.AlertResolvedStatus
	waitfor.Cond(t, 60*time.Second, func() error {
		h, err := nodeHealth(ctx, nc, id)
		if err != nil {
			return err
		}
		if h.State != event.HealthHealthy {
			return fmt.Errorf("node %s (%s), want healthy", h.State, h.Reason)
		}
		if rcv.has(resolved.EventID()) == 0 {
			return fmt.Errorf("resolution %s not delivered", resolved.EventID())
		}
		return nil
	})
	if n := rcv.has(firing.EventID()); n != 1 {
		t.Fatalf("firing delivered %d times, want once", n)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	n, _ := strconv.Atoi(p)
	return n
}
