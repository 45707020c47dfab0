package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health/internal/notify"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

func alertEvent(t *testing.T, typ event.Type, sev string) event.Envelope {
	t.Helper()
	a := event.Alert{Fingerprint: "fp1", Rule: "NodeDown", Status: event.AlertFiringStatus, Severity: sev, Seq: 1,
		Summary: "node n1 is down", Labels: map[string]string{"node": "n1"}, StartsAt: time.Unix(1, 0)}
	env, err := event.New(typ, a.EventID(), "test", a)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

type capture struct {
	mu     sync.Mutex
	status int
	bodies [][]byte
	hdrs   []http.Header
}

func (c *capture) server(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.bodies = append(c.bodies, b)
		c.hdrs = append(c.hdrs, r.Header.Clone())
		w.WriteHeader(c.status)
	}))
	t.Cleanup(s.Close)
	return s
}

func newNotifier(t *testing.T, target notify.Target) *notify.Notifier {
	t.Helper()
	ts := []notify.Target{target}
	if err := notify.Validate(ts); err != nil {
		t.Fatal(err)
	}
	n := notify.New(ts[0])
	t.Cleanup(n.Close)
	return n
}

func TestWebhookIsSignedAndClassifiesReplies(t *testing.T) {
	c := &capture{status: http.StatusOK}
	srv := c.server(t)
	n := newNotifier(t, notify.Target{Name: "hook", Kind: notify.KindWebhook, URL: srv.URL, Secret: "k"})
	env := alertEvent(t, event.AlertFiring, event.SeverityCritical)
	if err := n.Deliver(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	body, h := c.bodies[0], c.hdrs[0]
	if !notify.Verify([]byte("k"), body, h.Get(notify.HeaderSignature)) || notify.Verify([]byte("other"), body, h.Get(notify.HeaderSignature)) {
		t.Fatalf("signature %q does not verify with the secret only", h.Get(notify.HeaderSignature))
	}
	var wb notify.WebhookBody
	if err := json.Unmarshal(body, &wb); err != nil || wb.ID != env.ID || wb.Alert.Rule != "NodeDown" || h.Get(notify.HeaderDelivery) != env.ID {
		t.Fatalf("body %s headers %v", body, h)
	}
	tests := []struct {
		status int
		class  errs.Class
	}{
		{http.StatusServiceUnavailable, errs.Unavailable},
		{http.StatusTooManyRequests, errs.Unavailable},
		{http.StatusBadRequest, errs.Invalid},
	}
	for _, tt := range tests {
		c.mu.Lock()
		c.status = tt.status
		c.mu.Unlock()
		if err := n.Deliver(context.Background(), env); !errors.Is(err, tt.class) {
			t.Errorf("status %d: err %v, want %v", tt.status, err, tt.class)
		}
	}
	srv.Close()
	if err := n.Deliver(context.Background(), env); !errors.Is(err, errs.Unavailable) {
		t.Errorf("receiver down: err %v, want Unavailable", err)
	}
}

func TestChatFormatsAndSeverityFilter(t *testing.T) {
	c := &capture{status: http.StatusOK}
	srv := c.server(t)
	slack := newNotifier(t, notify.Target{Name: "slack", Kind: notify.KindSlack, URL: srv.URL, MinSeverity: "warning"})
	tg := newNotifier(t, notify.Target{Name: "tg", Kind: notify.KindTelegram, URL: srv.URL, ChatID: "-100"})
	if err := slack.Deliver(context.Background(), alertEvent(t, event.AlertFiring, event.SeverityInfo)); err != nil || len(c.bodies) != 0 {
		t.Fatalf("info alert to a warning+ notifier: err %v, %d posts", err, len(c.bodies))
	}
	if err := slack.Deliver(context.Background(), alertEvent(t, event.AlertFiring, event.SeverityCritical)); err != nil {
		t.Fatal(err)
	}
	if err := tg.Deliver(context.Background(), alertEvent(t, event.AlertResolved, event.SeverityCritical)); err != nil {
		t.Fatal(err)
	}
	var s map[string]string
	var m map[string]any
	if json.Unmarshal(c.bodies[0], &s) != nil || !strings.Contains(s["text"], "FIRING NodeDown (critical): node n1 is down") {
		t.Fatalf("slack body %s", c.bodies[0])
	}
	if json.Unmarshal(c.bodies[1], &m) != nil || m["chat_id"] != "-100" || !strings.Contains(m["text"].(string), "RESOLVED NodeDown") {
		t.Fatalf("telegram body %s", c.bodies[1])
	}
}
