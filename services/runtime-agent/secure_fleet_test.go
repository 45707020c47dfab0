package agent_test

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// secureFleet is vpnd's composition on a TLS listener: an embedded NATS
// server that always authenticates, with its own CA, the registry holding
// the fleet authority, and agents that join with tokens.
type secureFleet struct {
	t    *testing.T
	srv  *natsserver.Server
	nc   *nats.Conn // a service connection (the gateway's view)
	js   jetstream.JetStream
	auth *users.FleetAuthority
}

func startSecureFleet(t *testing.T) *secureFleet {
	t.Helper()
	dir := t.TempDir()
	trust, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := natsauth.LoadOrCreateTLS(filepath.Join(dir, "nats", "tls"), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(xraytest.FreePort(t))
	srv, err := natsserver.Start(natsserver.Config{DataDir: dir, Listen: "127.0.0.1:" + port, Trust: trust,
		TLS: &natsserver.TLSFiles{Cert: tl.CertFile(), Key: tl.KeyFile(), CA: tl.CAFile()}}, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	f := &secureFleet{t: t, srv: srv}
	if f.nc, err = srv.Connect(nats.Name("test-service")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.nc.Close)
	if f.js, err = jetstream.New(f.nc); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if err := bus.Provision(ctx, f.js, 1); err != nil {
		t.Fatal(err)
	}
	sysCred, err := trust.SystemCredential("test")
	if err != nil {
		t.Fatal(err)
	}
	sys, err := srv.ConnectAs(sysCred)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	f.auth = &users.FleetAuthority{Trust: trust, System: sys, URLs: []string{"tls://127.0.0.1:" + port},
		CAFingerprint: tl.CAFingerprint(), CAPEM: tl.CAPEM()}
	cfg := users.Defaults()
	cfg.Fleet = f.auth
	env := svc.Env{NC: f.nc, JS: f.js, Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- users.Run(rctx, cfg, env) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("users.Run: %v", err)
		}
	})
	waitfor.Cond(t, 30*time.Second, func() error {
		_, err := bus.Request[node.EnrollmentsResponse](ctx, f.nc, subject.FleetCmd(subject.FleetList), struct{}{})
		return err
	})
	return f
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// add enrolls a node as `vpn nodes add NAME --groups ...` does (the
// gateway calls the same endpoint) and returns its join token.
func (f *secureFleet) add(name string, groups ...string) string {
	f.t.Helper()
	resp, err := bus.Request[node.AddResponse](testCtx(f.t), f.nc, subject.FleetCmd(subject.FleetAdd), node.AddRequest{Node: name, Groups: groups})
	if err != nil {
		f.t.Fatalf("adding node %s: %v", name, err)
	}
	return resp.Token
}

// joinedAgent is a host: its data dir and the credential it joined with.
type joinedAgent struct {
	name    string
	dataDir string
	joined  agent.Joined
}

// join runs what `vpn-agent --join TOKEN` runs on a new host: trade the
// token for the node's credential (over TLS pinned to the token's CA),
// then run the agent on a connection made with it.
func (f *secureFleet) join(token string) *joinedAgent {
	f.t.Helper()
	dir := f.t.TempDir()
	j, err := agent.Join(testCtx(f.t), token, dir)
	if err != nil {
		f.t.Fatalf("joining: %v", err)
	}
	a := &joinedAgent{name: j.Node, dataDir: dir, joined: j}
	nc := a.conn(f.t)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.NodeID, cfg.Runtime, cfg.PublicAddr = j.Node, "process", "127.0.0.1"
	cfg.XrayBin, cfg.AllowPrivateNetworks, cfg.Heartbeat = xraytest.Binary(f.t), true, time.Second
	env := svc.Env{NC: nc, JS: js, Log: natstest.Logger(f.t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	ag, err := agent.New(ctx, cfg, env, nil)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("agent %s: %v", j.Node, err)
		}
		removeAll(f.t, ag)
		ag.Runtime().Close()
	})
	return a
}

// conn dials as the joined host does on every start.
func (a *joinedAgent) conn(t *testing.T) *nats.Conn {
	t.Helper()
	opts, err := a.joined.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.joined.ServerURLs(), append(opts, nats.MaxReconnects(-1))...)
	if err != nil {
		t.Fatalf("node %s connecting with its credential: %v", a.name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// removeAll stops and removes the agent's workloads (Xray outlives its
// agent by design; the test must not leave it behind).
func removeAll(t *testing.T, a *agent.Agent) {
	ctx := context.Background()
	ws, err := a.Runtime().List(ctx)
	if err != nil {
		return
	}
	for _, w := range ws {
		_ = a.Runtime().Remove(ctx, w.ID)
	}
}

func (f *secureFleet) socksServer(nodeName string) (server.Server, int) {
	f.t.Helper()
	port := xraytest.FreePort(f.t)
	s, err := bus.Request[server.Server](testCtx(f.t), f.nc, subject.ServersCmd(subject.ServersCreate), server.CreateRequest{
		Node: nodeName, Name: "edge", Inbounds: []server.InboundRequest{{Protocol: user.SOCKS5, Port: port, Listen: "127.0.0.1"}}})
	if err != nil {
		f.t.Fatalf("creating a server on %s: %v", nodeName, err)
	}
	return s, port
}

// fetch gets target through the SOCKS5 inbound on port as u.
func fetch(port int, u user.User, target string) error {
	return fetchAs(user.SOCKS5, port, u.Credentials.SOCKS5, target)
}

// TestTwoNodesJoinAndServeOnlyTheirUsers: two hosts join with `vpn nodes
// add` tokens over TLS; a user placed on group eu is in the eu node's view
// and Xray only, the other node's credential cannot read its secrets, and
// placing the user on every node reaches both Xrays live. A used token
// does not work twice; a revoked node is cut off.
func TestTwoNodesJoinAndServeOnlyTheirUsers(t *testing.T) {
	f := startSecureFleet(t)
	target := xraytest.StartHTTPTarget(t)
	euToken := f.add("eu1", "eu")
	eu := f.join(euToken)
	us := f.join(f.add("us1", "us"))

	// A token works once.
	if _, err := agent.Join(testCtx(t), euToken, t.TempDir()); !errors.Is(err, errs.Unauthorized) && !errors.Is(err, errs.Forbidden) {
		t.Fatalf("joining twice with one token: %v, want it refused", err)
	}
	// On the host that used it, the same token again is done already (an
	// installer run twice): what the join kept, with no question to the
	// server, which would refuse the used token.
	if again, err := agent.Join(testCtx(t), " "+euToken+"\n", eu.dataDir); err != nil || again.Node != "eu1" || again.TokenSHA256 != eu.joined.TokenSHA256 || again.TokenSHA256 == "" {
		t.Fatalf("joining again with the token this host used: %+v, %v", again, err)
	}

	_, euPort := f.socksServer("eu1")
	_, usPort := f.socksServer("us1")
	u, err := bus.Request[user.User](testCtx(t), f.nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{
		Name: "eve", Protocols: []user.Protocol{user.SOCKS5}, Placement: &user.Placement{Groups: []string{"eu"}}})
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 90*time.Second, func() error { return fetch(euPort, u, target) })
	if err := fetch(usPort, u, target); err == nil {
		t.Fatal("the us node serves a user placed on group eu")
	}

	// us1's credential reads its own view, never eu1's: the user's secret
	// is not there for it, and asking for eu1's key is refused.
	usNC := us.conn(t)
	usJS, err := jetstream.New(usNC)
	if err != nil {
		t.Fatal(err)
	}
	views, err := usJS.KeyValue(testCtx(t), subject.BucketNodeViews)
	if err != nil {
		t.Fatalf("us1 opening node_views: %v", err)
	}
	gctx, cancel := context.WithTimeout(testCtx(t), 3*time.Second)
	if e, err := views.Get(gctx, subject.ViewUserKey("eu1", u.ID)); err == nil {
		t.Fatalf("us1 read eu1's view of the user: %s", e.Value())
	}
	cancel()
	if _, err := views.Get(testCtx(t), subject.ViewUserKey("us1", u.ID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("us1's own view of a user placed on eu: %v, want not found", err)
	}

	// Every node, live.
	if _, err := bus.Request[user.User](testCtx(t), f.nc, subject.UsersCmd(subject.UsersUpdate), user.UpdateRequest{
		ID: u.ID, Placement: &user.Placement{All: true}}); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 90*time.Second, func() error { return fetch(usPort, u, target) })
	if err := fetch(euPort, u, target); err != nil {
		t.Fatalf("eu stopped serving the user: %v", err)
	}

	// Revoked: the node's connection is closed and its credential refused.
	if _, err := bus.Request[node.Enrollment](testCtx(t), f.nc, subject.FleetCmd(subject.FleetRevoke), node.NodeRequest{Node: "us1"}); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 30*time.Second, func() error {
		if usNC.IsConnected() {
			return errors.New("the revoked node is still connected")
		}
		return nil
	})
	opts, _ := us.joined.DialOptions()
	if nc, err := nats.Connect(us.joined.ServerURLs(), opts...); err == nil {
		nc.Close()
		t.Fatal("a revoked node's credential still connects")
	}
	// The agent's own dial says so in one line and gives up, instead of
	// retrying a credential that can never work again.
	creds := bus.DialConfig{URL: us.joined.ServerURLs(), Creds: us.joined.CredsFile, CA: us.joined.CAFile, Name: "revoked"}
	if nc, err := bus.Dial(testCtx(t), creds, natstest.Logger(t), nats.CustomInboxPrefix(subject.NodeInboxPrefix("us1"))); !errors.Is(err, errs.Unauthorized) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("dialing with a revoked credential: %v, want Unauthorized", err)
	}

	// eu1 keeps serving.
	if err := fetch(euPort, u, target); err != nil {
		t.Fatalf("eu stopped serving after us1 was revoked: %v", err)
	}
	_ = eu
}
