package health_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	handlercmd "github.com/xtls/xray-core/app/proxyman/command"
	"github.com/xtls/xray-core/core"
	"github.com/xtls/xray-core/proxy/socks"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	startRegistry(t, ns)
	a, id := startXrayAgent(t, ns, "xnode", nil)
	rt := a.Runtime()

	var srv server.Server
	var err error
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

// startRegistry runs the user registry (users.Run, with the servers
// service) on ns until the test ends.
func startRegistry(t *testing.T, ns *natstest.Server) {
	t.Helper()
	uenv := svc.Env{NC: ns.Conn(), Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	uenv.JS, _ = jetstream.New(uenv.NC)
	uctx, ucancel := context.WithCancel(context.Background())
	udone := make(chan error, 1)
	go func() { udone <- users.Run(uctx, users.Defaults(), uenv) }()
	t.Cleanup(func() { ucancel(); <-udone })
}

// startXrayAgent runs a real agent that runs the pinned Xray as supervised
// processes, on a node named after prefix, until the test ends (then it
// removes the Xray it left: Xray outlives its agent by design). tune, when
// set, changes its configuration first. It returns the agent and its node.
func startXrayAgent(t *testing.T, ns *natstest.Server, prefix string, tune func(*agent.Config)) (*agent.Agent, string) {
	t.Helper()
	aenv := svc.Env{NC: ns.Conn(), Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: t.TempDir()}
	aenv.JS, _ = jetstream.New(aenv.NC)
	acfg := agent.DefaultConfig()
	acfg.NodeID = randomName(prefix)
	acfg.Runtime = "process"
	acfg.PublicAddr = "127.0.0.1"
	acfg.Heartbeat = 100 * time.Millisecond
	acfg.StatsInterval = 200 * time.Millisecond
	acfg.XrayBin = xrayBinary(t)
	if tune != nil {
		tune(&acfg)
	}
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
		if ws, err := rt.List(context.Background()); err == nil {
			for _, w := range ws {
				_ = rt.Remove(context.Background(), w.ID)
			}
		}
		rt.Close()
	})
	return a, acfg.NodeID
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

const behindRules = `
[[rule]]
name = "ServerUsersBehind"
metric = "server_users_behind"
op = ">"
threshold = 0
for = "1s"
severity = "warning"
summary = "server {{server}} on node {{node}} is off by {{value}} users"
`

// TestStuckApplyIsPartialAndAlerts runs a real agent with a real Xray
// serving a SOCKS5 server with 3 users, then takes the inbound away from
// under the agent through Xray's own API (as `xray api rmi` would): every
// user change on it now fails. Two more users are created: the server's
// status is partial, 3 of 5 users, with the reason, never applied, and the
// ServerUsersBehind alert fires. Once the inbound is back the agent
// catches up: Xray holds exactly the 5 users, the status is applied 5 of 5
// and the alert resolves.
func TestStuckApplyIsPartialAndAlerts(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	rules := filepath.Join(t.TempDir(), "rules.toml")
	if err := os.WriteFile(rules, []byte(behindRules), 0o600); err != nil {
		t.Fatal(err)
	}
	startHealth(t, ns, testConfig(rules))
	nc := ns.Conn()
	startRegistry(t, ns)
	a, id := startXrayAgent(t, ns, "bnode", func(c *agent.Config) { c.DriftInterval = time.Second })
	rt := a.Runtime()

	var srv server.Server
	var err error
	waitfor.Cond(t, 30*time.Second, func() error {
		srv, err = bus.Request[server.Server](ctx, nc, subject.ServersCmd(subject.ServersCreate), server.CreateRequest{
			Node: id, Name: "edge", Inbounds: []server.InboundRequest{{Protocol: user.SOCKS5, Port: freeTCPPort(t), Listen: "127.0.0.1"}}})
		return err
	})
	tag := srv.Inbounds[0].Tag
	var ids []string
	createUsers := func(n int) {
		for range n {
			u, err := bus.Request[user.User](ctx, nc, subject.UsersCmd(subject.UsersCreate),
				user.CreateRequest{Name: randomName("u"), Protocols: []user.Protocol{user.SOCKS5}})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, u.ID)
		}
	}
	statusIs := func(state server.State, applied, desired int) server.Status {
		var st server.Status
		waitfor.Cond(t, 60*time.Second, func() error {
			got, err := bus.Request[server.Server](ctx, nc, subject.ServersCmd(subject.ServersGet), server.GetRequest{ID: srv.ID})
			if err != nil {
				return err
			}
			st = got.Status
			if st.State != state || st.UsersApplied != applied || st.UsersDesired != desired {
				return fmt.Errorf("status %s %d of %d (%s), want %s %d of %d", st.State, st.UsersApplied, st.UsersDesired, st.Reason, state, applied, desired)
			}
			return nil
		})
		return st
	}
	createUsers(3)
	statusIs(server.StateApplied, 3, 3)

	// The fault: the inbound disappears from the running Xray.
	w, err := rt.Inspect(ctx, server.WorkloadName(srv.ID))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("passthrough:///"+w.Labels["vpnfleet.xray-api"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	hs := handlercmd.NewHandlerServiceClient(conn)
	list, err := hs.ListInbounds(ctx, &handlercmd.ListInboundsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var saved *core.InboundHandlerConfig
	for _, in := range list.GetInbounds() {
		if in.GetTag() == tag {
			saved = in
		}
	}
	if saved == nil {
		t.Fatalf("inbound %s not in xray", tag)
	}
	if _, err := hs.RemoveInbound(ctx, &handlercmd.RemoveInboundRequest{Tag: tag}); err != nil {
		t.Fatal(err)
	}
	createUsers(2)
	st := statusIs(server.StatePartial, 3, 5)
	if st.Reason == "" {
		t.Fatalf("partial status without a reason: %+v", st)
	}
	labels := map[string]string{"node": id, "server": srv.ID}
	var firing event.Alert
	waitfor.Cond(t, 30*time.Second, func() error {
		as, err := alertsOf(ctx, nc, event.AlertsRequest{Node: id})
		if err != nil {
			return err
		}
		firing, err = findAlert(as, "ServerUsersBehind", labels)
		return err
	})
	if firing.Value < 1 || firing.Value > 2 {
		t.Fatalf("alert value %v, want the 1 or 2 users behind when it fired", firing.Value)
	}

	// The inbound comes back (with the 3 accounts it had): the agent
	// catches up, and the alert resolves.
	if _, err := hs.AddInbound(ctx, &handlercmd.AddInboundRequest{Inbound: saved}); err != nil {
		t.Fatal(err)
	}
	statusIs(server.StateApplied, 5, 5)
	waitfor.Cond(t, 30*time.Second, func() error {
		as, err := alertsOf(ctx, nc, event.AlertsRequest{Status: event.AlertResolvedStatus, Node: id})
		if err != nil {
			return err
		}
		_, err = findAlert(as, "ServerUsersBehind", labels)
		return err
	})
	list, err = hs.ListInbounds(ctx, &handlercmd.ListInboundsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, in := range list.GetInbounds() {
		if in.GetTag() != tag {
			continue
		}
		inst, err := in.GetProxySettings().GetInstance()
		if err != nil {
			t.Fatal(err)
		}
		for acct := range inst.(*socks.ServerConfig).GetAccounts() {
			if acct != "vpnfleet-placeholder" { // the agent's own, never a user
				held = append(held, acct)
			}
		}
	}
	slices.Sort(held)
	slices.Sort(ids)
	if !slices.Equal(held, ids) {
		t.Fatalf("xray holds %v, want exactly %v", held, ids)
	}
}
