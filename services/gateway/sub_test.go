package gateway_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestSubscriptionURL checks the public subscription: a secret token that
// is not the user id, the three formats by query and User-Agent, the
// headers clients read, healthy nodes only, and rotation.
func TestSubscriptionURL(t *testing.T) {
	h := newHarness(t)
	h.putNode("node-a", time.Now())
	h.putNode("node-b", time.Now().Add(-time.Hour)) // its agent stopped beating
	h.putServer("srv-a", "node-a")
	h.putServer("srv-b", "node-b")
	var u user.User
	h.mustJSON("POST", "/api/v1/users", "operator", map[string]any{
		"name": "ivy", "protocols": []string{"vless-reality"}, "traffic_limit_bytes": 5 << 30,
		"expires_at": "2030-01-02T00:00:00Z",
	}, http.StatusCreated, &u)

	var s api.Subscription
	h.mustJSON("GET", "/api/v1/users/ivy/subscription", "operator", nil, http.StatusOK, &s)
	if strings.Contains(s.URL, u.ID) || len(s.Token) < 40 || !strings.HasPrefix(s.URL, h.url+"/sub/") {
		t.Fatalf("subscription %+v", s)
	}
	var again api.Subscription
	h.mustJSON("GET", "/api/v1/users/ivy/subscription", "operator", nil, http.StatusOK, &again)
	if again.Token != s.Token {
		t.Fatalf("token changed between reads")
	}
	path := strings.TrimPrefix(s.URL, h.url)

	r := h.do("GET", path, "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("sub: %d %s", r.status, r.body)
	}
	raw, err := base64.StdEncoding.DecodeString(r.String())
	if err != nil {
		t.Fatalf("not base64: %s", r.body)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "vless://"+u.Credentials.VLESS.UUID+"@203.0.113.7:8443") {
		t.Fatalf("links %q (only the healthy node's server should be listed)", lines)
	}
	info := r.header.Get("Subscription-Userinfo")
	if info != fmt.Sprintf("upload=0; download=0; total=%d; expire=%d", 5<<30, time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC).Unix()) {
		t.Fatalf("subscription-userinfo %q", info)
	}
	if r.header.Get("Profile-Update-Interval") == "" {
		t.Fatalf("no profile-update-interval")
	}

	for _, c := range []struct{ query, ua, want string }{
		{"?format=clash", "", "proxies:"},
		{"", "clash-verge/v1.7", "proxies:"},
		{"", "mihomo/1.18", "proxies:"},
		{"?format=sing-box", "", `"outbounds"`},
		{"", "SFA/1.9 (sing-box 1.9)", `"outbounds"`},
	} {
		r := h.do("GET", path+c.query, "", nil, "User-Agent", c.ua)
		if r.status != http.StatusOK || !strings.Contains(r.String(), c.want) {
			t.Errorf("%s %s: %d %.200s", c.query, c.ua, r.status, r.body)
		}
	}
	if r := h.do("GET", path+"?format=pdf", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("bad format: %d", r.status)
	}

	var rotated api.Subscription
	h.mustJSON("POST", "/api/v1/users/ivy/subscription/rotate", "operator", nil, http.StatusOK, &rotated)
	if rotated.Token == s.Token {
		t.Fatalf("rotation kept the token")
	}
	if r := h.do("GET", path, "", nil); r.status != http.StatusNotFound {
		t.Fatalf("old token after rotation: %d", r.status)
	}
	if r := h.do("GET", strings.TrimPrefix(rotated.URL, h.url), "", nil); r.status != http.StatusOK {
		t.Fatalf("new token: %d", r.status)
	}
	if r := h.do("GET", "/sub/"+u.ID, "", nil); r.status != http.StatusNotFound {
		t.Fatalf("the user id works as a token: %d", r.status)
	}
}

// TestLinksAndQR checks links (healthy nodes only unless all=true) and the
// QR code as PNG and as text.
func TestLinksAndQR(t *testing.T) {
	h := newHarness(t)
	h.putNode("node-a", time.Now())
	h.putNode("node-b", time.Now().Add(-time.Hour))
	h.putServer("srv-a", "node-a")
	h.putServer("srv-b", "node-b")
	h.mustJSON("POST", "/api/v1/users", "operator", map[string]any{"name": "jack", "protocols": []string{"vless-reality"}}, http.StatusCreated, nil)

	var lr user.LinksResponse
	h.mustJSON("GET", "/api/v1/users/jack/links", "operator", nil, http.StatusOK, &lr)
	if len(lr.Links) != 1 || lr.Links[0].Node != "node-a" || len(lr.Missing) == 0 {
		t.Fatalf("links %+v", lr)
	}
	h.mustJSON("GET", "/api/v1/users/jack/links?all=true", "operator", nil, http.StatusOK, &lr)
	if len(lr.Links) != 2 {
		t.Fatalf("all links %+v", lr)
	}
	r := h.do("GET", "/api/v1/users/jack/qr", "operator", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(r.body, []byte("\x89PNG")) {
		t.Fatalf("png: %d %s", r.status, r.header.Get("Content-Type"))
	}
	r = h.do("GET", "/api/v1/users/jack/qr", "operator", nil, "Accept", "text/plain")
	if r.status != http.StatusOK || !strings.Contains(r.String(), "█") {
		t.Fatalf("text: %d %.100s", r.status, r.body)
	}
	if r := h.do("GET", "/api/v1/users/jack/qr?protocol=socks5", "operator", nil); r.status != http.StatusNotFound || h.problem(r).Hint == "" {
		t.Fatalf("no link: %d %s", r.status, r.body)
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct{ id, typ, data string }

// openEvents opens the event stream as a viewer and returns a channel of
// its events.
func (h *harness) openEvents(t *testing.T, query, lastID string) (<-chan sseEvent, func()) {
	t.Helper()
	var hdr []string
	if lastID != "" {
		hdr = []string{"Last-Event-ID", lastID}
	}
	s := h.openStream("viewer", "/api/v1/events"+query, hdr...)
	if s.status != http.StatusOK {
		t.Fatalf("events: %d %+v", s.status, s.prob)
	}
	return s.events, s.close
}

func next(t *testing.T, ch <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("event stream ended")
		}
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return sseEvent{}
}

// TestEventsStreamResumes checks the SSE stream: filtered by kind, ids are
// stream sequences, and Last-Event-ID resumes right after the last event.
func TestEventsStreamResumes(t *testing.T) {
	h := newHarness(t)
	ch, stop := h.openEvents(t, "?kind=user", "")
	h.createUser("kate")
	e1 := next(t, ch)
	var env struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(e1.data), &env); err != nil || e1.typ != "user.created.v1" || env.Type != e1.typ || e1.id == "" {
		t.Fatalf("first event %+v (%v)", e1, err)
	}
	stop() // the audit record of the create is not of kind user: never sent

	h.createUser("liam")
	h.createUser("mona")
	ch, stop = h.openEvents(t, "?kind=user", e1.id)
	defer stop()
	e2, e3 := next(t, ch), next(t, ch)
	id1, _ := strconv.ParseUint(e1.id, 10, 64)
	id2, _ := strconv.ParseUint(e2.id, 10, 64)
	if !strings.Contains(e2.data, `"liam"`) || !strings.Contains(e3.data, `"mona"`) || id2 <= id1 || id1 == 0 {
		t.Fatalf("resumed with %+v then %+v", e2, e3)
	}
}

// TestSubscriptionOfUnservedUser is issue 18.15: a user no node serves
// (disabled, limited, expired) gets a subscription with no links, titled
// with the reason, and every format comes with a file name that has its
// extension.
func TestSubscriptionOfUnservedUser(t *testing.T) {
	h := newHarness(t)
	h.putNode("node-a", time.Now())
	h.putServer("srv-a", "node-a")
	h.mustJSON("POST", "/api/v1/users", "operator", map[string]any{"name": "una", "protocols": []string{"vless-reality"}}, http.StatusCreated, nil)
	var s api.Subscription
	h.mustJSON("GET", "/api/v1/users/una/subscription", "operator", nil, http.StatusOK, &s)
	path := strings.TrimPrefix(s.URL, h.url)

	for _, c := range []struct{ format, file string }{
		{"base64", "una.txt"}, {"clash", "una.yaml"}, {"sing-box", "una.json"},
	} {
		r := h.do("GET", path+"?format="+c.format, "", nil)
		if r.status != http.StatusOK || r.header.Get("Content-Disposition") != `attachment; filename="`+c.file+`"` {
			t.Errorf("%s: %d, Content-Disposition %q, want %s", c.format, r.status, r.header.Get("Content-Disposition"), c.file)
		}
	}
	if r := h.do("GET", path, "", nil); !strings.Contains(decodeB64(t, r.String()), "vless://") {
		t.Fatalf("an active user's subscription has no link: %s", r.body)
	}

	h.mustJSON("POST", "/api/v1/users/una/disable", "operator", nil, http.StatusOK, nil)
	r := h.do("GET", path, "", nil)
	if r.status != http.StatusOK || strings.TrimSpace(decodeB64(t, r.String())) != "" {
		t.Fatalf("a disabled user's subscription: %d %q, want no links", r.status, decodeB64(t, r.String()))
	}
	title, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(r.header.Get("Profile-Title"), "base64:"))
	if !strings.Contains(string(title), "disabled") {
		t.Fatalf("profile title %q does not say why", title)
	}
	for _, f := range []string{"clash", "sing-box"} {
		if r := h.do("GET", path+"?format="+f, "", nil); r.status != http.StatusOK || strings.Contains(r.String(), "203.0.113.7") {
			t.Errorf("%s of a disabled user: %d %s, want no proxies", f, r.status, r.body)
		}
	}
}

func decodeB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("not base64: %q", s)
	}
	return string(b)
}

// TestSubscriptionNeverDropsToZeroLinks: when no node that serves a user is
// known healthy (a restart, a gap in heartbeats), its subscription lists
// every node's links, marked, instead of none; once a node is healthy again
// only the healthy ones are listed.
func TestSubscriptionNeverDropsToZeroLinks(t *testing.T) {
	h := newHarness(t)
	h.putNode("node-a", time.Now().Add(-time.Hour)) // no heartbeat lately
	h.putServer("srv-a", "node-a")
	var u user.User
	h.mustJSON("POST", "/api/v1/users", "operator", map[string]any{"name": "gap", "protocols": []string{"vless-reality"}}, http.StatusCreated, &u)
	var s api.Subscription
	h.mustJSON("GET", "/api/v1/users/gap/subscription", "operator", nil, http.StatusOK, &s)
	path := strings.TrimPrefix(s.URL, h.url)

	r := h.do("GET", path, "", nil)
	if lines := strings.Fields(decodeB64(t, r.String())); r.status != http.StatusOK || len(lines) != 1 || r.header.Get("Vpn-Subscription-Health") != "unknown" {
		t.Fatalf("subscription with no node healthy: %d %q, health %q; want the one link, marked unknown", r.status, lines, r.header.Get("Vpn-Subscription-Health"))
	}

	h.putNode("node-b", time.Now())
	h.putServer("srv-b", "node-b")
	r = h.do("GET", path, "", nil)
	lines := strings.Fields(decodeB64(t, r.String()))
	if r.status != http.StatusOK || len(lines) != 1 || !strings.Contains(lines[0], "203.0.113.7") || r.header.Get("Vpn-Subscription-Health") != "" {
		t.Fatalf("subscription with a healthy node: %d %q, health %q; want only the healthy node's link, unmarked", r.status, lines, r.header.Get("Vpn-Subscription-Health"))
	}
}
