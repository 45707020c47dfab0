package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
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

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// harness is a real gateway in front of the real users service on an
// in-process JetStream, and a home directory for the CLI's config.
type harness struct {
	t         testing.TB
	ns        *natstest.Server
	js        jetstream.JetStream
	url       string
	tokenFile string
	home      string
	env       map[string]string
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	ns := natstest.Start(t)
	h := &harness{t: t, ns: ns, home: t.TempDir()}
	h.js = h.newEnv().JS
	env := h.newEnv()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ucfg := users.Defaults()
	ucfg.Fleet = userstest.FleetAuthority(t, ns)
	go func() { done <- users.Run(ctx, ucfg, env) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("users.Run: %v", err)
			}
		})
	})
	waitfor.Cond(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := bus.Request[user.CountResponse](ctx, env.NC, subject.UsersCmd(subject.UsersCount), user.Filter{})
		return err
	})

	gwEnv := h.newEnv()
	cfg := gateway.Defaults()
	cfg.RateLimit = 0
	cfg.UpstreamTimeout = 2 * time.Second
	gw := gateway.New(gwEnv, cfg)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(gw.Close)
	h.url = srv.URL
	h.tokenFile = filepath.Join(t.TempDir(), gateway.AdminTokenFile)
	if _, err := gateway.Bootstrap(context.Background(), gwEnv, h.tokenFile); err != nil {
		t.Fatal(err)
	}
	h.env = map[string]string{"HOME": h.home, "VPN_CONFIG": filepath.Join(h.home, "config.toml"), "COLUMNS": "100"}
	return h
}

func (h *harness) newEnv() svc.Env {
	nc := h.ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	return svc.Env{NC: nc, JS: js, Log: natstest.Logger(h.t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
}

// result is one run of the CLI.
type result struct {
	stdout, stderr string
	err            error
}

// run runs the real command tree with args.
func (h *harness) run(args ...string) result {
	h.t.Helper()
	return h.runWith(app.Env{}, args...)
}

func (h *harness) runWith(env app.Env, args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	env.Getenv = func(k string) string { return h.env[k] }
	env.Stdout, env.Stderr = &out, &errb
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := app.Execute(ctx, args, env)
	return result{stdout: out.String(), stderr: errb.String(), err: err}
}

// must runs args and fails the test on an error.
func (h *harness) must(args ...string) result {
	h.t.Helper()
	r := h.run(args...)
	if r.err != nil {
		h.t.Fatalf("vpn %s: %v\nstderr: %s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// login saves the admin token in the harness's config file.
func (h *harness) login() {
	h.t.Helper()
	h.must("login", "--url", h.url, "--token-file", h.tokenFile)
}

var (
	uuidRE  = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	tokIDRE = regexp.MustCompile(`\b[0-9a-f]{12}\b`)
)

// golden compares got with testdata/name.golden (rewritten with -update),
// after replacing ids that change every run with same-length placeholders.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = uuidRE.ReplaceAllString(got, "xxxxxxxx-xxxx-4xxx-xxxx-xxxxxxxxxxxx")
	got = tokIDRE.ReplaceAllString(got, "tttttttttttt")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got != string(want) {
		t.Fatalf("%s differs from %s (run with -update to accept):\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// putNode registers a node in the nodes bucket as its agent does.
func (h *harness) putNode(id string, heartbeat time.Time) {
	h.t.Helper()
	kv, err := h.js.KeyValue(context.Background(), subject.BucketNodes)
	if err != nil {
		h.t.Fatal(err)
	}
	n := node.Node{ID: id, Hostname: id, PublicAddr: "203.0.113.7", Runtime: "process", State: node.StateRunning,
		StartedAt: heartbeat, HeartbeatAt: heartbeat, HeartbeatEvery: 5 * time.Second, AgentVersion: "dev"}
	data, _ := json.Marshal(n)
	if _, err := kv.Put(context.Background(), id, data); err != nil {
		h.t.Fatal(err)
	}
}

// putServer stores an applied VLESS+Reality server, as the servers
// service and the node's agent leave it: the server in the servers
// bucket, the agent's report of it in server_status.
func (h *harness) putServer(id, nodeID string) {
	h.t.Helper()
	kv, err := h.js.KeyValue(context.Background(), subject.BucketServers)
	if err != nil {
		h.t.Fatal(err)
	}
	s := server.Server{
		ID: id, Node: nodeID, Name: "reality", Engine: server.EngineXray,
		Inbounds: []server.Inbound{{Tag: "vless", Protocol: user.VLESSReality, Port: 8443, Reality: &server.Reality{
			ServerNames: []string{"www.example.com"}, Dest: "www.example.com:443",
			PrivateKey: "cPV3Rx4fW1O4tKjNNaYk8wUXi0v3gYk5Q9A2yJc1m0Q", PublicKey: "Z5Xl1w9mXqQf3iC6eK2pWJx6tq1Yb8uJmL3cVn0a4Ts",
			ShortIDs: []string{"0123abcd"}, Fingerprint: "chrome",
		}}},
	}
	data, _ := json.Marshal(s)
	if _, err := kv.Put(context.Background(), id, data); err != nil {
		h.t.Fatal(err)
	}
	h.applyServer(id)
}

// applyServer reports server id applied as its node's agent does, at the
// server's current revision and spec.
func (h *harness) applyServer(id string) {
	h.t.Helper()
	h.reportServer(id, server.Status{State: server.StateApplied, PublicHost: "203.0.113.7"})
}

// reportServer reports st of server id as its node's agent does, at the
// server's current revision and spec.
func (h *harness) reportServer(id string, st server.Status) {
	h.t.Helper()
	ctx := context.Background()
	kv, err := h.js.KeyValue(ctx, subject.BucketServers)
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(ctx, id)
	if err != nil {
		h.t.Fatal(err)
	}
	var s server.Server
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		h.t.Fatal(err)
	}
	s.Revision = e.Revision()
	natstest.ReportStatus(h.t, h.js, s, st)
}
