package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/daemon"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/version"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The HTTP client's idle keep-alive connections close lazily.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// syncBuffer collects a run's log output safely across goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ready is the "vpnd ready" log line.
type ready struct {
	Msg        string `json:"msg"`
	GatewayURL string `json:"gateway_url"`
	OpsURL     string `json:"ops_url"`
	NATSURL    string `json:"nats_url"`
	NATSCreds  string `json:"nats_creds"`
	NATSCA     string `json:"nats_ca"`
}

// connectNATS connects to the NATS of a ready vpnd as a standalone service
// does: its service creds file, and its CA when the listener uses TLS.
func connectNATS(t *testing.T, r ready) *nats.Conn {
	t.Helper()
	opts := []nats.Option{nats.UserCredentials(r.NATSCreds)}
	if r.NATSCA != "" {
		opts = append(opts, nats.RootCAs(r.NATSCA))
	}
	nc, err := nats.Connect(r.NATSURL, opts...)
	if err != nil {
		t.Fatalf("connecting to vpnd's nats: %v", err)
	}
	return nc
}

func findReady(logs string) (ready, bool) {
	for _, line := range strings.Split(logs, "\n") {
		var r ready
		if json.Unmarshal([]byte(line), &r) == nil && r.Msg == "vpnd ready" {
			return r, true
		}
	}
	return ready{}, false
}

type instance struct {
	ready
	stop func() error
}

// start runs vpnd in-process on random ports over dataDir and waits for its
// ready line. extra args come last.
func start(t testing.TB, dataDir string, extra ...string) instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{"--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}, extra...)
	go func() { done <- daemon.Run(ctx, args, func(string) string { return "" }, out) }()
	var r ready
	waitfor.Cond(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("vpnd exited early: %v\n%s", err, out.String())
		default:
		}
		var ok bool
		if r, ok = findReady(out.String()); !ok {
			return errors.New("no ready line yet")
		}
		return nil
	})
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return instance{ready: r, stop: stop}
}

func get(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// waitReady waits until the gateway's /readyz answers 200: it does once the
// services behind it answer real requests, a moment after the ready line.
func waitReady(t testing.TB, gatewayURL string) {
	t.Helper()
	waitfor.Cond(t, 20*time.Second, func() error {
		if code := get(t, gatewayURL+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("GET /readyz = %d", code)
		}
		return nil
	})
}

func TestServesProbesAndKeepsDataAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	v := start(t, dir)
	if code := get(t, v.GatewayURL+"/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz = %d", code)
	}
	waitReady(t, v.GatewayURL)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc := connectNATS(t, v.ready)
	js, _ := jetstream.New(nc)
	if err := bus.Ready(ctx, js); err != nil {
		t.Fatalf("streams and buckets after start: %v", err)
	}
	kv, _ := js.KeyValue(ctx, subject.BucketUsers)
	if _, err := kv.Put(ctx, "u1", []byte("alice")); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	if err := v.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	v2 := start(t, dir)
	if v2.NATSCreds != v.NATSCreds {
		t.Fatalf("service creds moved from %s to %s", v.NATSCreds, v2.NATSCreds)
	}
	nc2 := connectNATS(t, v2.ready)
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	kv2, err := js2.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "u1")
	if err != nil || string(e.Value()) != "alice" {
		t.Fatalf("after restart: %v, %v", e, err)
	}
	if err := v2.stop(); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}

func TestBadInputExitsTwoWithOneLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--bogus"}, "bogus"},
		{"unreadable config", []string{"--config", "/nonexistent/vpnd.toml"}, "/nonexistent/vpnd.toml"},
		{"unwritable data dir", []string{"--data-dir", filepath.Join(file, "data")}, "data dir"},
		{"bad replicas", []string{"--data-dir", t.TempDir(), "--replicas", "2"}, "replicas"},
		{"taken http address", []string{"--data-dir", t.TempDir(), "--http-addr", "256.0.0.1:1", "--nats-listen", ""}, "256.0.0.1"},
		{"plain nats for other hosts", []string{"--data-dir", t.TempDir(), "--nats-listen", "0.0.0.0:4222", "--nats-tls", "off"}, "nats_tls"},
		{"plain nats on a public address", []string{"--data-dir", t.TempDir(), "--nats-listen", "192.0.2.1:4222", "--nats-tls", "off"}, "nats_listen 192.0.2.1:4222"},
		{"unknown nats tls mode", []string{"--data-dir", t.TempDir(), "--nats-tls", "maybe"}, "nats_tls"},
		// The gateway's and the registry's own settings are vpnd's flags
		// too, checked by their Validate.
		{"no job workers", []string{"--data-dir", t.TempDir(), "--job-workers", "0"}, "job_workers"},
		{"negative rate limit", []string{"--data-dir", t.TempDir(), "--rate-limit", "-1"}, "rate_limit"},
		{"zero job timeout", []string{"--data-dir", t.TempDir(), "--job-timeout", "0s"}, "job_timeout"},
		{"upstream timeout not a duration", []string{"--data-dir", t.TempDir(), "--upstream-timeout", "soon"}, "--upstream-timeout=\"soon\": not a duration"},
		{"public url without a scheme", []string{"--data-dir", t.TempDir(), "--public-url", "vpn.example.com"}, "public_url"},
		{"trusted proxy not a cidr", []string{"--data-dir", t.TempDir(), "--trusted-proxies", "proxy.local"}, "trusted_proxies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := daemon.Run(context.Background(), tt.args, func(string) string { return "" }, io.Discard)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			var stderr bytes.Buffer
			if code := lifecycle.ExitCode(&stderr, "vpnd", err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			line := stderr.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, tt.want) {
				t.Fatalf("stderr %q: want one line naming %q", line, tt.want)
			}
		})
	}
}

// TestAcknowledgedWriteSurvivesKill9 runs the real vpnd binary, writes a
// user through JetStream (acknowledged), kills the process with SIGKILL and
// starts it again on the same data dir: the write is there.
func TestAcknowledgedWriteSurvivesKill9(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vpnd")
	build := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/vpnd/cmd/vpnd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vpnd: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const writes = 200
	proc, r := startBinary(t, bin, dir)
	nc := connectNATS(t, r)
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		if _, err := kv.Put(ctx, fmt.Sprintf("u%d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = proc.Wait()

	proc2, r2 := startBinary(t, bin, dir)
	defer func() { _ = proc2.Process.Signal(syscall.SIGTERM); _ = proc2.Wait() }()
	nc2 := connectNATS(t, r2)
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	kv2, err := js2.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range writes {
		e, err := kv2.Get(ctx, fmt.Sprintf("u%d", i))
		if err != nil || string(e.Value()) != fmt.Sprint(i) {
			t.Fatalf("acknowledged write u%d lost after kill -9: %v", i, err)
		}
	}
	if err := proc2.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc2.Wait(); err != nil {
		t.Fatalf("SIGTERM: want exit 0, got %v", err)
	}
}

func startBinary(t *testing.T, bin, dir string) (*exec.Cmd, ready) {
	t.Helper()
	cmd := exec.Command(bin, "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan ready, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if r, ok := findReady(sc.Text()); ok {
				lines <- r
			}
		}
	}()
	select {
	case r := <-lines:
		return cmd, r
	case <-time.After(15 * time.Second):
		t.Fatal("vpnd binary never became ready")
	}
	return nil, ready{}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestJoinsExternalNATS runs vpnd with --nats-url against a server it did
// not start: it provisions there and becomes ready without embedding one.
func TestJoinsExternalNATS(t *testing.T) {
	ns := natstest.StartWith(t, natstest.Options{NoProvision: true})
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	args := []string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--nats-url", ns.URL(), "--nats-creds", ns.ServiceCredsFile()}
	go func() { done <- daemon.Run(ctx, args, func(string) string { return "" }, out) }()
	var r ready
	waitfor.Cond(t, 10*time.Second, func() error {
		var ok bool
		if r, ok = findReady(out.String()); !ok {
			return errors.New("no ready line yet")
		}
		return nil
	})
	if r.NATSURL != ns.URL() {
		t.Fatalf("nats url %q, want the external %q", r.NATSURL, ns.URL())
	}
	waitReady(t, r.GatewayURL)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMetricsOnOpsListenerOnly: the API listener is public (subscription
// URLs), so /metrics is served on the ops listener (--ops-addr) only,
// with the build's vpnfleet_build_info and the local agent's metrics;
// the probes answer there too. An empty --ops-addr serves none.
func TestMetricsOnOpsListenerOnly(t *testing.T) {
	v := start(t, t.TempDir())
	if code := get(t, v.GatewayURL+"/metrics"); code != http.StatusNotFound {
		t.Fatalf("GET /metrics on the API listener = %d, want 404", code)
	}
	if v.OpsURL == "" {
		t.Fatal("the ready line names no ops_url")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		waitfor.Cond(t, 20*time.Second, func() error {
			if code := get(t, v.OpsURL+path); code != http.StatusOK {
				return fmt.Errorf("GET %s on the ops listener = %d", path, code)
			}
			return nil
		})
	}
	resp, err := http.Get(v.OpsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics on the ops listener = %d, %v", resp.StatusCode, err)
	}
	for _, want := range []string{
		`vpnfleet_build_info{go_version="` + runtime.Version() + `",version="` + version.Version + `"} 1`,
		"vpnfleet_agent_workloads",
		"vpnfleet_agent_servers",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("ops /metrics lacks %s", want)
		}
	}

	off := start(t, t.TempDir(), "--ops-addr", "")
	if off.OpsURL != "" {
		t.Fatalf("--ops-addr \"\" still serves ops on %s", off.OpsURL)
	}
}
