package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/services/health/internal/notify"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// testConfig is the health configuration of tests: every interval short,
// so conditions turn within a second or two.
func testConfig(rulesFile string) health.Config {
	c := health.Defaults()
	c.RulesFile = rulesFile
	// These tests judge nodes by heartbeats, restarts and alerts on a
	// shared test machine whose CPU is whatever other tests make it; the
	// CPU threshold is covered by nodehealth's own tests.
	c.DegradedCPU = 100
	c.DownAfter = 2 * time.Second
	c.LagAfter = time.Second
	c.EvalInterval = 50 * time.Millisecond
	c.HistoryStep = time.Second
	c.HistoryCoarse = 10 * time.Second
	c.HistorySettle = 300 * time.Millisecond
	c.LagInterval = 200 * time.Millisecond
	c.SweepInterval = time.Second
	c.LeaseRetry = 100 * time.Millisecond
	c.NotifyRetry = 50 * time.Millisecond
	c.NotifyRetryMax = 500 * time.Millisecond
	return c
}

// running is one health core started for a test.
type running struct {
	env  svc.Env
	stop func() error
}

// startHealth runs health.Run on its own connection until the test ends
// (or stop is called) and fails the test if Run fails.
func startHealth(t testing.TB, ns *natstest.Server, cfg health.Config) *running {
	t.Helper()
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	env := svc.Env{NC: nc, JS: js, Log: natstest.Logger(t), Metrics: prometheus.NewRegistry(), Probe: probe.New()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- health.Run(ctx, cfg, env) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("health run: %v", err)
		}
	})
	return &running{env: env, stop: stop}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// gauge reads one series of the registry; ok is false when absent.
func gauge(reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, false
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

// receiver is a webhook receiver on a fixed loopback port that can go
// down (nothing listens: connections are refused) and come back.
type receiver struct {
	t      *testing.T
	secret []byte
	addr   string

	mu      sync.Mutex
	srv     *httptest.Server
	got     map[string]int // deliveries by event id
	bodies  []notify.WebhookBody
	badSig  int
	downAt  time.Time
	isUp    bool
	arrived chan struct{}
}

func newReceiver(t *testing.T, secret string) *receiver {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, secret: []byte(secret), addr: l.Addr().String(), got: map[string]int{}, arrived: make(chan struct{}, 1000)}
	r.serve(l)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) URL() string { return "http://" + r.addr + "/hook" }

func (r *receiver) serve(l net.Listener) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(r.handle))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	r.mu.Lock()
	r.srv, r.isUp = srv, true
	r.mu.Unlock()
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	data, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !notify.Verify(r.secret, data, req.Header.Get(notify.HeaderSignature)) {
		r.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var b notify.WebhookBody
	if err := json.Unmarshal(data, &b); err != nil || b.ID != req.Header.Get(notify.HeaderDelivery) {
		r.badSig++
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.got[b.ID]++
	r.bodies = append(r.bodies, b)
	w.WriteHeader(http.StatusNoContent)
}

// down stops listening: from now on connections are refused.
func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv, r.isUp, r.downAt = nil, false, time.Now()
	r.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens again on the same address.
func (r *receiver) up() {
	l, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver listening again on %s: %v", r.addr, err)
	}
	r.serve(l)
}

// has reports how many times the event with id was delivered.
func (r *receiver) has(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id]
}

func (r *receiver) snapshot() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.got))
	for k, v := range r.got {
		out[k] = v
	}
	return out, r.badSig
}

// alertsOf requests alerts from the health endpoint.
func alertsOf(ctx context.Context, nc *nats.Conn, req event.AlertsRequest) ([]event.Alert, error) {
	reply, err := bus.Request[event.AlertsReply](ctx, nc, subject.HealthCmd(subject.HealthAlerts), req)
	return reply.Alerts, err
}

func nodeHealth(ctx context.Context, nc *nats.Conn, id string) (event.NodeHealth, error) {
	reply, err := bus.Request[event.NodesReply](ctx, nc, subject.HealthCmd(subject.HealthNodes), event.NodesRequest{Node: id})
	if err != nil {
		return event.NodeHealth{}, err
	}
	return reply.Nodes[0], nil
}

func findAlert(as []event.Alert, rule string, labels map[string]string) (event.Alert, error) {
	for _, a := range as {
		if a.Rule != rule {
			continue
		}
		match := true
		for k, v := range labels {
			if a.Labels[k] != v {
				match = false
			}
		}
		if match {
			return a, nil
		}
	}
	return event.Alert{}, fmt.Errorf("no %s alert with %v among %d", rule, labels, len(as))
}

// workloadBinary builds the agent's runtime contract test workload (it
// lives in the agent module's internal tree, so it is built, not
// imported).
func workloadBinary(t testing.TB) string {
	t.Helper()
	_, file, _, _ := goruntime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "runtime-agent", "internal", "runtime", "runtimetest", "workload")
	out := filepath.Join(t.TempDir(), "workload")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the test workload: %v\n%s", err, b)
	}
	return out
}

// create calls a runtime's Create without naming its Spec type, which is
// internal to the agent module: the type is inferred from the method and
// filled from JSON field names.
func create[S any](ctx context.Context, fn func(context.Context, S) (string, error), spec map[string]any) (string, error) {
	var s S
	data, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return "", err
	}
	return fn(ctx, s)
}

func randomName(prefix string) string { return fmt.Sprintf("%s-%06d", prefix, rand.IntN(1e6)) }

var errNotYet = errors.New("not yet")

// svcEnvNone is an environment without NATS, for checks that must fail
// before the core touches it.
func svcEnvNone() svc.Env {
	return svc.Env{Log: slog.New(slog.DiscardHandler), Metrics: prometheus.NewRegistry(), Probe: probe.New()}
}
