package gateway_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
)

// rules is this test's own copy of who may call what. A route registered
// without a rule here fails TestEveryRouteEveryRole, so nobody adds a
// route without deciding its rule.
var rules = map[string]string{
	"GET /healthz":                                  "public",
	"GET /readyz":                                   "public",
	"GET /api/v1/openapi.json":                      "public",
	"GET /sub/{token}":                              "public",
	"GET /install/agent.sh":                         "public",
	"GET /install/vpn-agent":                        "public",
	"GET /install/xray":                             "public",
	"GET /install/checksums":                        "public",
	"GET /api/v1/status":                            "viewer",
	"GET /api/v1/users":                             "viewer",
	"POST /api/v1/users":                            "operator",
	"GET /api/v1/users/{user}":                      "viewer",
	"PATCH /api/v1/users/{user}":                    "operator",
	"DELETE /api/v1/users/{user}":                   "operator",
	"POST /api/v1/users/{user}/disable":             "operator",
	"POST /api/v1/users/{user}/enable":              "operator",
	"POST /api/v1/users/{user}/reset-traffic":       "operator",
	"POST /api/v1/users/{user}/rotate":              "operator",
	"POST /api/v1/users/{user}/sessions/cut":        "operator",
	"GET /api/v1/users/{user}/links":                "operator",
	"GET /api/v1/users/{user}/qr":                   "operator",
	"GET /api/v1/users/{user}/subscription":         "operator",
	"POST /api/v1/users/{user}/subscription/rotate": "operator",
	"GET /api/v1/nodes":                             "viewer",
	"GET /api/v1/nodes/{node}":                      "viewer",
	"GET /api/v1/nodes/{node}/stats":                "viewer",
	"POST /api/v1/nodes":                            "admin",
	"GET /api/v1/enrollments":                       "viewer",
	"PUT /api/v1/nodes/{node}/groups":               "operator",
	"POST /api/v1/nodes/{node}/revoke":              "admin",
	"PUT /api/v1/nodes/{node}/runtime":              "operator",
	"GET /api/v1/runtimes":                          "viewer",
	"GET /api/v1/users/{user}/usage":                "viewer",
	"GET /api/v1/alerts":                            "viewer",
	"POST /api/v1/alerts/{alert}/ack":               "operator",
	"GET /api/v1/servers":                           "viewer",
	"POST /api/v1/servers":                          "operator",
	"GET /api/v1/servers/{server_id}":               "viewer",
	"PATCH /api/v1/servers/{server_id}":             "operator",
	"DELETE /api/v1/servers/{server_id}":            "operator",
	"POST /api/v1/servers/{server_id}/restart":      "operator",
	"GET /api/v1/servers/{server_id}/logs":          "operator",
	"GET /api/v1/events":                            "viewer",
	"GET /api/v1/jobs":                              "viewer",
	"POST /api/v1/jobs":                             "operator",
	"GET /api/v1/jobs/{job}":                        "viewer",
	"POST /api/v1/jobs/{job}/cancel":                "operator",
	"POST /api/v1/jobs/{job}/pause":                 "operator",
	"POST /api/v1/jobs/{job}/resume":                "operator",
	"POST /api/v1/jobs/{job}/rollback":              "operator",
	"GET /api/v1/jobs/{job}/events":                 "viewer",
	"GET /api/v1/tokens":                            "admin",
	"POST /api/v1/tokens":                           "admin",
	"DELETE /api/v1/tokens/{id}":                    "admin",
	"POST /api/v1/backup":                           "admin",
}

var rank = map[string]int{"public": 0, "viewer": 1, "operator": 2, "admin": 3}

// concrete fills a pattern's path values with harmless values.
func concrete(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, strings.NewReplacer("{user}", "walker", "{node}", "node-1", "{server_id}", "srv-none",
		"{id}", "000000000000", "{token}", "no-such-token", "{job}", "nosuchjob", "{alert}", "nosuchalert").Replace(path)
}

// status sends one request and returns its status as soon as the headers
// arrive (event streams never end by themselves).
func (h *harness) status(method, path, token string) (int, string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var body *strings.Reader
	if method != "GET" {
		body = strings.NewReader("{}")
	} else {
		body = strings.NewReader("")
	}
	req, _ := http.NewRequestWithContext(ctx, method, h.url+path, body)
	if method != "GET" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	code := ""
	if ct == "application/problem+json" {
		var p problemDoc
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		_ = jsonUnmarshal(buf[:n], &p)
		code = p.Code
	}
	return resp.StatusCode, code
}

// TestEveryRouteEveryRole calls every registered route with every role,
// no token, a malformed token, an unknown token and a revoked token, and
// checks 401/403 exactly where the rules say.
func TestEveryRouteEveryRole(t *testing.T) {
	h := newHarness(t)
	h.createUser("walker")
	var revoked api.CreatedToken
	h.mustJSON("POST", "/api/v1/tokens", "admin", map[string]string{"name": "to revoke", "role": "admin"}, http.StatusCreated, &revoked)
	h.mustJSON("DELETE", "/api/v1/tokens/"+revoked.ID, "admin", nil, http.StatusOK, nil)

	var patterns []string
	for _, rt := range h.gw.API().Routes() {
		patterns = append(patterns, rt.Pattern())
		if _, ok := rules[rt.Pattern()]; !ok {
			t.Errorf("route %s has no rule in this test: decide who may call it", rt.Pattern())
		}
		if got, want := string(rt.Need), rules[rt.Pattern()]; want != "" && (got != want && !(got == "" && want == "public")) {
			t.Errorf("route %s needs %q, the rules say %q", rt.Pattern(), got, want)
		}
	}
	for p := range rules {
		if !slices.Contains(patterns, p) {
			t.Errorf("rule for %s, which is not registered", p)
		}
	}

	callers := []struct {
		name, token, role string
		wantCode          string // the problem code of a 401
	}{
		{"no token", "", "", "token_missing"},
		{"malformed token", "not-a-token", "", "token_invalid"},
		{"unknown token", "vpn_0123456789ab_" + strings.Repeat("0", 64), "", "token_invalid"},
		{"revoked token", revoked.Secret, "", "token_revoked"},
		{"viewer", h.tokens["viewer"], "viewer", ""},
		{"operator", h.tokens["operator"], "operator", ""},
		{"admin", h.tokens["admin"], "admin", ""},
	}
	// Mutating routes last, deletions at the very end, so reads see the user.
	slices.SortStableFunc(patterns, func(a, b string) int { return order(a) - order(b) })
	for _, pattern := range patterns {
		need := rules[pattern]
		method, path := concrete(pattern)
		for _, c := range callers {
			got, code := h.status(method, path, c.token)
			switch {
			case need == "public":
				if got == http.StatusUnauthorized || got == http.StatusForbidden {
					t.Errorf("%s as %s: %d on a public route", pattern, c.name, got)
				}
			case c.role == "":
				if got != http.StatusUnauthorized || code != c.wantCode {
					t.Errorf("%s as %s: %d %s, want 401 %s", pattern, c.name, got, code, c.wantCode)
				}
			case rank[c.role] >= rank[need]:
				if got == http.StatusUnauthorized || got == http.StatusForbidden {
					t.Errorf("%s as %s: %d %s, want it allowed", pattern, c.name, got, code)
				}
			default:
				if got != http.StatusForbidden {
					t.Errorf("%s as %s: %d, want 403", pattern, c.name, got)
				}
			}
		}
	}
}

func order(pattern string) int {
	switch {
	case strings.HasPrefix(pattern, "DELETE"):
		return 2
	case strings.HasPrefix(pattern, "GET"):
		return 0
	}
	return 1
}
