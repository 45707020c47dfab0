package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/daemon"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// xrayBinary is the pinned Xray: $VPN_XRAY_BIN (make test sets it), else
// built from the runtime agent's module, which pins it.
func xrayBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("VPN_XRAY_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("VPN_XRAY_BIN=%s: %v", bin, err)
		}
		return bin
	}
	bin := filepath.Join(t.TempDir(), "xray")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xtls/xray-core/main")
	cmd.Dir = "../../../runtime-agent"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building xray: %v\n%s", err, out)
	}
	return bin
}

// api calls the gateway as the first admin.
type api struct {
	t     testing.TB
	base  string
	token string
}

func (a api) do(method, path string, body, out any, hdr http.Header) {
	a.t.Helper()
	if err := a.try(method, path, body, out, hdr); err != nil {
		a.t.Fatal(err)
	}
}

// try is do that returns the failure instead of ending the test.
func (a api) try(method, path string, body, out any, hdr http.Header) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var p map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return fmt.Errorf("%s %s: %d %v", method, path, resp.StatusCode, p)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// TestOneTraceFromTheAPIToXray creates a user through vpnd's HTTP API and
// finds one trace id on the gateway's request span, the registry's handling
// of vpn.users.create, the user.created event it published, and the agent's
// span applying the user to a running Xray.
func TestOneTraceFromTheAPIToXray(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(noop.NewTracerProvider())
	})

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	args := []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--ops-addr", "", "--nats-listen", "",
		"--node-id", "traced", "--public-addr", "127.0.0.1", "--xray-bin", xrayBinary(t), "--heartbeat", "200ms"}
	go func() { done <- daemon.Run(ctx, args, func(string) string { return "" }, out) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("vpnd: %v", err)
		}
		removeXray(t, dir)
	})
	var r ready
	waitfor.Cond(t, 20*time.Second, func() error {
		var ok bool
		if r, ok = findReady(out.String()); !ok {
			return errors.New("no ready line yet")
		}
		return nil
	})
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := api{t: t, base: r.GatewayURL, token: strings.TrimSpace(string(token))}

	// A server on this node, so that a user has an Xray to be applied to.
	waitfor.Cond(t, 20*time.Second, func() error {
		var list struct {
			Nodes []json.RawMessage `json:"nodes"`
		}
		c.do(http.MethodGet, "/api/v1/nodes", nil, &list, nil)
		if len(list.Nodes) == 0 {
			return errors.New("node not registered yet")
		}
		return nil
	})
	var srv server.Server
	port := freePortInt(t)
	waitfor.Cond(t, 30*time.Second, func() error { // until the registry answers
		return c.try(http.MethodPost, "/api/v1/servers", server.CreateRequest{Node: "traced", Name: "traced",
			Inbounds: []server.InboundRequest{{Protocol: user.SOCKS5, Port: port, Listen: "127.0.0.1"}}}, &srv, nil)
	})
	waitfor.Cond(t, 60*time.Second, func() error {
		var got server.Server
		c.do(http.MethodGet, "/api/v1/servers/"+srv.ID, nil, &got, nil)
		if got.Status.State != server.StateApplied {
			return fmt.Errorf("server %s: %s %s", srv.ID, got.Status.State, got.Status.Reason)
		}
		return nil
	})

	// The caller starts the trace; everything after it must join.
	root := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x51, 0x1e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
		SpanID:  trace.SpanID{0xca, 0x11, 1, 2, 3, 4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	hdr := http.Header{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), root), propagation.HeaderCarrier(hdr))
	var u user.User
	c.do(http.MethodPost, "/api/v1/users", map[string]any{"name": "traced", "protocols": []string{"socks5"}}, &u, hdr)

	want := map[string]func(sdktrace.ReadOnlySpan) bool{
		"gateway request": func(s sdktrace.ReadOnlySpan) bool {
			return s.SpanKind() == trace.SpanKindServer && strings.Contains(s.Name(), "/api/v1/users")
		},
		"registry handling":       func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "process vpn.users.create" },
		"user.created event":      func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "publish vpn.evt.user."+u.ID },
		"agent applying the user": func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "apply user" },
	}
	waitfor.Cond(t, 30*time.Second, func() error {
		var missing []string
		for what, match := range want {
			found := false
			for _, s := range spans.Ended() {
				if s.SpanContext().TraceID() == root.TraceID() && match(s) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, what)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("no span in the caller's trace for: %s", strings.Join(missing, ", "))
		}
		return nil
	})
}

func freePortInt(t *testing.T) int {
	t.Helper()
	var p int
	_, _ = fmt.Sscan(freePort(t), &p)
	return p
}

// removeXray stops the Xray that vpnd's agent left running (by design it
// outlives the agent) by its config path under dir.
func removeXray(t *testing.T, dir string) {
	t.Helper()
	_ = exec.Command("pkill", "-f", filepath.Join(dir, "agent")).Run()
}
