package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestUsersOverHTTP drives the users routes the way the CLI does, against
// the real users service.
func TestUsersOverHTTP(t *testing.T) {
	h := newHarness(t)

	var alice user.User
	r := h.mustJSON("POST", "/api/v1/users", "operator", user.CreateRequest{Name: "alice", Protocols: []user.Protocol{user.VLESSReality}}, http.StatusCreated, &alice)
	if r.header.Get("Location") != "/api/v1/users/"+alice.ID || alice.Credentials.VLESS == nil {
		t.Fatalf("create: location %q, credentials %+v", r.header.Get("Location"), alice.Credentials)
	}
	for _, n := range []string{"bob", "carol", "dave"} {
		h.createUser(n)
	}

	t.Run("get by name and id; viewers see no credentials", func(t *testing.T) {
		var byName, byID user.User
		h.mustJSON("GET", "/api/v1/users/ALICE", "operator", nil, http.StatusOK, &byName)
		h.mustJSON("GET", "/api/v1/users/"+alice.ID, "viewer", nil, http.StatusOK, &byID)
		if byName.ID != alice.ID || byID.ID != alice.ID {
			t.Fatalf("got %s and %s, want %s", byName.ID, byID.ID, alice.ID)
		}
		if byName.Credentials.VLESS == nil || byID.Credentials.VLESS != nil {
			t.Fatalf("operator credentials %+v, viewer credentials %+v", byName.Credentials, byID.Credentials)
		}
	})

	t.Run("list pages with a cursor and filters", func(t *testing.T) {
		var names []string
		path := "/api/v1/users?limit=3"
		for path != "" {
			var page user.ListResponse
			r := h.mustJSON("GET", path, "viewer", nil, http.StatusOK, &page)
			for _, u := range page.Users {
				names = append(names, u.Name)
			}
			path = ""
			if page.NextCursor != "" {
				if !strings.Contains(r.header.Get("Link"), `rel="next"`) {
					t.Fatalf("no Link header with a next cursor")
				}
				path = "/api/v1/users?limit=3&cursor=" + page.NextCursor
			}
		}
		if got := strings.Join(names, ","); got != "alice,bob,carol,dave" {
			t.Fatalf("paged names %s", got)
		}
		var page user.ListResponse
		h.mustJSON("GET", "/api/v1/users?name_prefix=ca&sort=-name", "viewer", nil, http.StatusOK, &page)
		if len(page.Users) != 1 || page.Users[0].Name != "carol" {
			t.Fatalf("filtered: %+v", page.Users)
		}
	})

	t.Run("update, disable, enable, reset, rotate", func(t *testing.T) {
		var u user.User
		h.mustJSON("PATCH", "/api/v1/users/alice", "operator", map[string]any{"note": "vip", "traffic_limit_bytes": 1 << 30}, http.StatusOK, &u)
		if u.Note != "vip" || u.TrafficLimitBytes != 1<<30 {
			t.Fatalf("updated %+v", u)
		}
		stale := map[string]any{"note": "late", "expected_revision": alice.Revision}
		if r := h.do("PATCH", "/api/v1/users/alice", "operator", stale); r.status != http.StatusConflict || h.problem(r).Code != "conflict" {
			t.Fatalf("stale update: %d %s", r.status, r.body)
		}
		h.mustJSON("POST", "/api/v1/users/alice/disable", "operator", nil, http.StatusOK, &u)
		if u.Status != user.StatusDisabled {
			t.Fatalf("disabled: %s", u.Status)
		}
		h.mustJSON("POST", "/api/v1/users/alice/enable", "operator", nil, http.StatusOK, &u)
		if u.Status != user.StatusActive {
			t.Fatalf("enabled: %s", u.Status)
		}
		h.mustJSON("POST", "/api/v1/users/alice/reset-traffic", "operator", nil, http.StatusOK, &u)
		before := u.Credentials.VLESS.UUID
		h.mustJSON("POST", "/api/v1/users/alice/rotate", "operator", map[string]any{"protocols": []string{"vless-reality"}}, http.StatusOK, &u)
		if u.Credentials.VLESS.UUID == before {
			t.Fatalf("rotate kept the credential")
		}
	})

	t.Run("delete", func(t *testing.T) {
		var d user.DeleteResponse
		h.mustJSON("DELETE", "/api/v1/users/dave", "operator", nil, http.StatusOK, &d)
		r := h.do("GET", "/api/v1/users/dave", "viewer", nil)
		if r.status != http.StatusNotFound || h.problem(r).Code != "not_found" {
			t.Fatalf("after delete: %d %s", r.status, r.body)
		}
	})

	t.Run("a taken name is a conflict with a hint", func(t *testing.T) {
		r := h.do("POST", "/api/v1/users", "operator", user.CreateRequest{Name: "Bob"})
		if p := h.problem(r); r.status != http.StatusConflict || p.Code != "conflict" {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})
}

// TestAuditEveryMutatingCall checks that changes, failures and denials
// are each recorded on EVENTS with actor, action, target and result.
func TestAuditEveryMutatingCall(t *testing.T) {
	h := newHarness(t)
	h.createUser("erin")
	h.do("POST", "/api/v1/users/erin/disable", "viewer", nil)      // denied
	h.do("POST", "/api/v1/users/nobody1/disable", "operator", nil) // error
	want := []struct{ action, target, result, role string }{
		{"tokens.create", "", event.AuditOK, "admin"},
		{"users.create", "user/erin", event.AuditOK, "operator"},
		{"users.disable", "user/erin", event.AuditDenied, "viewer"},
		{"users.disable", "user/nobody1", event.AuditError, "operator"},
	}
	cons, err := h.js.OrderedConsumer(ctxT(t), subject.StreamEvents, jsFilter(subject.EventsOfKind(subject.KindAudit)))
	if err != nil {
		t.Fatal(err)
	}
	var got []event.Audit
	waitfor.Cond(t, 20*time.Second, func() error {
		for {
			m, err := cons.Next(jsWait(200 * time.Millisecond))
			if err != nil {
				break
			}
			var env event.Envelope
			var a event.Audit
			if err := json.Unmarshal(m.Data(), &env); err != nil || env.Type != event.AuditRecorded || env.Decode(&a) != nil {
				return fmt.Errorf("bad audit message %s", m.Data())
			}
			got = append(got, a)
		}
		if len(got) < 5 { // two tokens.create from the harness
			return fmt.Errorf("%d audit records", len(got))
		}
		return nil
	})
	for _, w := range want {
		found := false
		for _, a := range got {
			if a.Action == w.action && a.Result == w.result && a.Role == w.role && (w.target == "" || a.Target == w.target) && a.Actor != "" && a.Status != 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit record %+v in %+v", w, got)
		}
	}
}

// TestTokensLifecycle creates, lists and revokes a token, and checks that
// an expired token is refused with its own code.
func TestTokensLifecycle(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true})
	var ct api.CreatedToken
	h.mustJSON("POST", "/api/v1/tokens", "admin", map[string]string{"name": "ci", "role": "viewer", "ttl": "24h"}, http.StatusCreated, &ct)
	if id, ok := auth.IDOf(ct.Secret); !ok || id != ct.ID || ct.Hash != "" || ct.ExpiresAt.IsZero() {
		t.Fatalf("created %+v", ct)
	}
	r := h.mustJSON("GET", "/api/v1/tokens", "admin", nil, http.StatusOK, nil)
	if strings.Contains(r.String(), ct.Secret[20:]) || strings.Contains(r.String(), `"hash"`) {
		t.Fatalf("token list leaks secrets: %s", r.body)
	}
	if r := h.do("GET", "/api/v1/status", ct.Secret, nil); r.status != http.StatusOK {
		t.Fatalf("new token: %d %s", r.status, r.body)
	}
	h.mustJSON("DELETE", "/api/v1/tokens/"+ct.ID, "admin", nil, http.StatusOK, nil)
	if r := h.do("GET", "/api/v1/status", ct.Secret, nil); r.status != http.StatusUnauthorized || h.problem(r).Code != "token_revoked" {
		t.Fatalf("revoked token: %d %s", r.status, r.body)
	}

	tok, secret, err := h.gw.API().Tokens().Create(ctxT(t), "short", auth.Viewer, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	tok.ExpiresAt = time.Now().Add(-time.Minute)
	if err := h.gw.API().Tokens().Put(ctxT(t), tok); err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", "/api/v1/status", secret, nil); r.status != http.StatusUnauthorized || h.problem(r).Code != "token_expired" {
		t.Fatalf("expired token: %d %s", r.status, r.body)
	}
	for _, bad := range []map[string]string{{"name": "", "role": "viewer"}, {"name": "x", "role": "root"}, {"name": "x", "role": "viewer", "ttl": "soon"}} {
		if r := h.do("POST", "/api/v1/tokens", "admin", bad); r.status != http.StatusBadRequest || len(h.problem(r).Errors) == 0 {
			t.Errorf("token %v: %d %s", bad, r.status, r.body)
		}
	}
}

// TestBootstrapWritesAdminTokenOnce checks the first-start token file: an
// admin token, mode 0600, made only when no token exists.
func TestBootstrapWritesAdminTokenOnce(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true})
	path := filepath.Join(t.TempDir(), "data", gateway.AdminTokenFile)
	if made, err := gateway.Bootstrap(ctxT(t), h.env(), path); err != nil || made {
		t.Fatalf("bootstrap with tokens present: made=%v err=%v", made, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("file written although tokens exist: %v", err)
	}

	h2 := natsOnly(t) // a fresh server: no token yet
	if made, err := gateway.Bootstrap(ctxT(t), h2, path); err != nil || !made {
		t.Fatalf("first bootstrap: made=%v err=%v", made, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	if _, ok := auth.IDOf(strings.TrimSpace(string(b))); !ok {
		t.Fatalf("token file holds %q", b)
	}
	if made, err := gateway.Bootstrap(ctxT(t), h2, path); err != nil || made {
		t.Fatalf("second bootstrap: made=%v err=%v", made, err)
	}
}
