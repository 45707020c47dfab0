package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
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

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The HTTP client's idle keep-alive connections close lazily.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// harness is a real JetStream server, the real users service (users.Run)
// and the gateway on a loopback HTTP server, with one token per role.
type harness struct {
	t      testing.TB
	ns     *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	gw     *gateway.Gateway
	url    string
	tokens map[string]string // role -> token
	// metrics is the gateway's registry, which the binary serves on its
	// ops listener (not on the API's).
	metrics *prometheus.Registry
}

type options struct {
	noUsers  bool
	noHealth bool
	cfg      func(*gateway.Config)
	// nats tunes the test's NATS server (natstest.DefaultMaxPayload: a
	// cluster's 1 MiB messages).
	nats natstest.Options
}

func newHarness(t testing.TB) *harness { return newHarnessWith(t, options{}) }

func newHarnessWith(t testing.TB, o options) *harness {
	t.Helper()
	ns := natstest.StartWith(t, o.nats)
	h := &harness{t: t, ns: ns, nc: ns.Conn(), tokens: map[string]string{}}
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	h.js = js
	if !o.noUsers {
		h.startUsers()
	}
	if !o.noUsers && !o.noHealth {
		h.startHealth()
	}
	env := h.env()
	cfg := gateway.Defaults()
	cfg.RateLimit = 0 // tests hammer the API; TestRateLimit turns it on
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h.gw = gateway.New(env, cfg)
	h.metrics = env.Metrics
	srv := httptest.NewServer(h.gw.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(h.gw.Close)
	h.url = srv.URL

	path := filepath.Join(t.TempDir(), gateway.AdminTokenFile)
	if _, err := gateway.Bootstrap(ctxT(t), env, path); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h.tokens["admin"] = strings.TrimSpace(string(b))
	for _, role := range []string{"operator", "viewer"} {
		var ct api.CreatedToken
		h.mustJSON("POST", "/api/v1/tokens", "admin", map[string]string{"name": role + " test", "role": role}, http.StatusCreated, &ct)
		h.tokens[role] = ct.Secret
	}
	return h
}

func (h *harness) env() svc.Env {
	nc := h.ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	return svc.Env{NC: nc, JS: js, Log: natstest.Logger(h.t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
}

// startUsers runs the real users service until the test ends, and waits
// until it answers.
func (h *harness) startUsers() {
	h.t.Helper()
	h.startUsersUnwaited()
	waitfor.Cond(h.t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := bus.Request[user.CountResponse](ctx, h.nc, subject.UsersCmd(subject.UsersCount), user.Filter{})
		return err
	})
}

// startUsersUnwaited runs the real users service until the test ends.
func (h *harness) startUsersUnwaited() {
	h.t.Helper()
	env := h.env()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := users.Defaults()
	cfg.Fleet = userstest.FleetAuthority(h.t, h.ns)
	go func() { done <- users.Run(ctx, cfg, env) }()
	var once sync.Once
	h.t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("users.Run: %v", err)
			}
		})
	})
}

// healthConfig turns every interval of the health service short, so a
// node's health is judged within a second.
func healthConfig() health.Config {
	c := health.Defaults()
	c.DownAfter = 2 * time.Second
	c.LagAfter = time.Second
	c.EvalInterval = 50 * time.Millisecond
	c.HistoryStep = time.Second
	c.HistoryCoarse = 10 * time.Second
	c.HistorySettle = 300 * time.Millisecond
	c.LeaseRetry = 100 * time.Millisecond
	return c
}

// startHealth runs the real health service (health.Run) until the test
// ends.
func (h *harness) startHealth() {
	h.t.Helper()
	env := h.env()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- health.Run(ctx, healthConfig(), env) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("health.Run: %v", err)
		}
	})
	waitfor.Cond(h.t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := bus.Request[event.NodesReply](ctx, h.nc, subject.HealthCmd(subject.HealthNodes), event.NodesRequest{})
		return err
	})
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// response is one HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return string(r.body) }

// do sends one request; role names a harness token ("" none), or a token
// itself when it does not name a role.
func (h *harness) do(method, path, role string, body any, hdr ...string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if role != "" {
		tok, ok := h.tokens[role]
		if !ok {
			tok = role
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// mustJSON sends a request, checks the status and decodes the reply.
func (h *harness) mustJSON(method, path, role string, body any, want int, out any) response {
	h.t.Helper()
	r := h.do(method, path, role, body)
	if r.status != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			h.t.Fatalf("%s %s: decoding %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// problemDoc is a decoded problem document.
type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Hint      string `json:"hint"`
	Service   string `json:"service"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Field string `json:"field"`
		Rule  string `json:"rule"`
	} `json:"errors"`
}

func (h *harness) problem(r response) problemDoc {
	h.t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		h.t.Fatalf("content type %q, want application/problem+json: %s", ct, r.body)
	}
	var p problemDoc
	if err := json.Unmarshal(r.body, &p); err != nil {
		h.t.Fatalf("decoding problem %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Code == "" || p.Hint == "" || p.Type == "" {
		h.t.Fatalf("incomplete problem (status %d): %s", r.status, r.body)
	}
	return p
}

func (h *harness) createUser(name string) user.User {
	h.t.Helper()
	var u user.User
	h.mustJSON("POST", "/api/v1/users", "operator", user.CreateRequest{Name: name}, http.StatusCreated, &u)
	return u
}

// putNode registers a node in the nodes bucket the way its agent does.
func (h *harness) putNode(id string, heartbeat time.Time) {
	h.t.Helper()
	kv, err := h.js.KeyValue(ctxT(h.t), subject.BucketNodes)
	if err != nil {
		h.t.Fatal(err)
	}
	n := node.Node{ID: id, Hostname: id, PublicAddr: "203.0.113.7", Runtime: "process", State: node.StateRunning,
		StartedAt: heartbeat, HeartbeatAt: heartbeat, HeartbeatEvery: 5 * time.Second}
	data, _ := json.Marshal(n)
	if _, err := kv.Put(ctxT(h.t), id, data); err != nil {
		h.t.Fatal(err)
	}
}

// putServer stores an applied VLESS+Reality server, as the servers
// service and the node's agent leave it: the server in the servers
// bucket, the agent's report of it in server_status.
func (h *harness) putServer(id, nodeID string) {
	h.t.Helper()
	kv, err := h.js.KeyValue(ctxT(h.t), subject.BucketServers)
	if err != nil {
		h.t.Fatal(err)
	}
	s := server.Server{
		ID: id, Node: nodeID, Name: "reality-" + id, Engine: server.EngineXray,
		Inbounds: []server.Inbound{{Tag: "vless", Protocol: user.VLESSReality, Port: 8443, Reality: &server.Reality{
			ServerNames: []string{"www.example.com"}, Dest: "www.example.com:443",
			PrivateKey: "cPV3Rx4fW1O4tKjNNaYk8wUXi0v3gYk5Q9A2yJc1m0Q", PublicKey: "Z5Xl1w9mXqQf3iC6eK2pWJx6tq1Yb8uJmL3cVn0a4Ts",
			ShortIDs: []string{"0123abcd"}, Fingerprint: "chrome",
		}}},
	}
	data, _ := json.Marshal(s)
	rev, err := kv.Put(ctxT(h.t), id, data)
	if err != nil {
		h.t.Fatal(err)
	}
	s.Revision = rev
	natstest.ReportStatus(h.t, h.js, s, server.Status{State: server.StateApplied, PublicHost: "203.0.113.7"})
}

// doReader sends a body of unknown length (chunked).
func (h *harness) doReader(method, path, role string, body io.Reader) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, io.MultiReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.tokens[role])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}
