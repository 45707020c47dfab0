package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// lockedBuffer is a log sink the server's goroutines write to at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the decoded log lines whose message is msg.
func (l *lockedBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %s: %v", sc.Bytes(), err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// clientFrom is an HTTP client whose connections come from local address
// ip (any of 127.0.0.0/8 reaches the test server).
func clientFrom(t *testing.T, ip string) *http.Client {
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestUnknownTokensAreLoggedAndAudited is issue 18.20: requests with a bad
// or unknown API token (401) are logged at info, at most one line per
// remote address and minute plus one counting the suppressed ones, and
// audited as refusals are (first record, then a summary) under actor
// "anonymous".
func TestUnknownTokensAreLoggedAndAudited(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	env := svc.Env{NC: nc, JS: js, Log: slog.New(slog.NewJSONHandler(logs, nil)), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	cfg := gateway.Defaults()
	cfg.RateLimit = 0
	cfg.AuditWindow = time.Hour // summaries are written when the gateway closes
	gw := gateway.New(env, cfg)
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(gw.Close)
	if _, err := gateway.Bootstrap(ctxT(t), env, filepath.Join(t.TempDir(), gateway.AdminTokenFile)); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		from, method, path string
		n                  int
	}{
		{"127.0.0.1", "GET", "/api/v1/users", 5},
		{"127.0.0.2", "POST", "/api/v1/users/someone/disable", 3},
	}
	for _, c := range calls {
		cl := clientFrom(t, c.from)
		for i := range c.n {
			req, err := http.NewRequestWithContext(context.Background(), c.method, srv.URL+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", fmt.Sprintf("Bearer guessed-token-%d", i))
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s %s from %s: %d, want 401", c.method, c.path, c.from, resp.StatusCode)
			}
		}
	}
	srv.Close() // every handler has returned
	if got := logs.lines(t, "unauthenticated request refused"); len(got) != 2 || got[0][logkey.Addr] != "127.0.0.1" || got[1][logkey.Addr] != "127.0.0.2" ||
		got[0]["level"] != "INFO" || got[0][logkey.Endpoint] != "users.list" {
		t.Fatalf("log lines %v, want one per remote address at info", got)
	}
	if got := logs.lines(t, "unauthenticated requests suppressed"); len(got) != 0 {
		t.Fatalf("summary lines %v before the window ended", got)
	}
	gw.Close()
	sums := map[any]any{}
	for _, l := range logs.lines(t, "unauthenticated requests suppressed") {
		sums[l[logkey.Addr]] = l[logkey.Count]
	}
	if fmt.Sprint(sums) != fmt.Sprint(map[any]any{"127.0.0.1": 4.0, "127.0.0.2": 2.0}) {
		t.Fatalf("suppressed counts %v, want 4 from 127.0.0.1 and 2 from 127.0.0.2", sums)
	}

	h := &harness{t: t, ns: ns, nc: nc, js: js}
	waitfor.Cond(t, 20*time.Second, func() error {
		var anon []event.Audit
		for _, env := range natstestEvents(t, h) {
			var a event.Audit
			if err := env.Decode(&a); err != nil {
				return err
			}
			if a.Actor == event.ActorAnonymous {
				anon = append(anon, a)
			}
		}
		n, byAction := 0, map[string]int{}
		for _, a := range anon {
			if a.Status != http.StatusUnauthorized || a.Result != event.AuditDenied || a.Remote == "" {
				return fmt.Errorf("record %+v", a)
			}
			n += max(a.Count, 1)
			byAction[a.Action]++
		}
		if n != 8 || len(anon) != 4 || byAction["users.list"] != 2 || byAction["users.disable"] != 2 {
			return fmt.Errorf("%d anonymous records for %d calls (%v), want a first record and a summary per action for 8 calls", len(anon), n, byAction)
		}
		return nil
	})
}
