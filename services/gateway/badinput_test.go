package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestBadInputIsPreciseProblem sends each kind of bad input and checks the
// status, the problem code and the field named, and that none of it
// reached NATS.
func TestBadInputIsPreciseProblem(t *testing.T) {
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.MaxBodyBytes = 4096 }})
	h.createUser("frank")

	var leaked atomic.Int64
	spy, err := h.nc.Subscribe("vpn.>", func(m *nats.Msg) {
		if !strings.HasPrefix(m.Subject, "vpn.evt.") { // audit records of the refused calls are expected
			leaked.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Unsubscribe()
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, method, path string
		body               any
		hdr                []string
		status             int
		code, field        string
	}{
		{"malformed json", "POST", "/api/v1/users", `{"name": "x",`, nil, 400, "malformed_json", ""},
		{"not json at all", "POST", "/api/v1/users", `name=x`, nil, 400, "malformed_json", ""},
		{"unknown field", "POST", "/api/v1/users", `{"name":"gina","admin":true}`, nil, 400, "unknown_field", "admin"},
		{"wrong type", "POST", "/api/v1/users", `{"name":42}`, nil, 400, "wrong_type", "name"},
		{"trailing data", "POST", "/api/v1/users", `{"name":"gina"} {}`, nil, 400, "malformed_json", ""},
		{"empty body", "POST", "/api/v1/users", ``, nil, 400, "empty_body", ""},
		{"huge body", "POST", "/api/v1/users", `{"name":"gina","note":"` + strings.Repeat("x", 10_000) + `"}`, nil, 413, "body_too_large", ""},
		{"huge body without length", "POST", "/api/v1/users", strings.NewReader(`{"note":"` + strings.Repeat("x", 10_000) + `"}`), nil, 413, "body_too_large", ""},
		{"wrong content type", "POST", "/api/v1/users", `{"name":"gina"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/api/v1/users", `{"name":"gina"}`, []string{"Content-Type", ""}, 415, "unsupported_media_type", ""},
		{"bad name", "POST", "/api/v1/users", user.CreateRequest{Name: "a b"}, nil, 400, "invalid", "name"},
		{"bad protocol", "POST", "/api/v1/users", user.CreateRequest{Name: "gina", Protocols: []user.Protocol{"wireguard"}}, nil, 400, "invalid", "protocols"},
		{"negative limit", "PATCH", "/api/v1/users/frank", `{"traffic_limit_bytes":-1}`, nil, 400, "invalid", "traffic_limit_bytes"},
		{"id in update body", "PATCH", "/api/v1/users/frank", `{"id":"x"}`, nil, 400, "unknown_field", "id"},
		{"subject wildcard in path", "GET", "/api/v1/users/fr*nk", nil, nil, 400, "invalid_path", "user"},
		{"subject separator in path", "GET", "/api/v1/users/a.b", nil, nil, 400, "invalid_path", "user"},
		{"encoded slash in path", "GET", "/api/v1/users/a%2Fb", nil, nil, 400, "invalid_path", "user"},
		{"encoded wildcard in path", "GET", "/api/v1/nodes/%3E", nil, nil, 400, "invalid_path", "node"},
		{"too long path value", "GET", "/api/v1/servers/" + strings.Repeat("s", 200), nil, nil, 400, "invalid_path", "server_id"},
		{"bad token id", "DELETE", "/api/v1/tokens/zz", nil, nil, 400, "invalid_path", "id"},
		{"bad limit", "GET", "/api/v1/users?limit=0", nil, nil, 400, "invalid_query", "limit"},
		{"bad status filter", "GET", "/api/v1/users?status=happy", nil, nil, 400, "invalid_query", "status"},
		{"unknown query parameter", "GET", "/api/v1/users?admin=1", nil, nil, 400, "invalid_query", "admin"},
		{"bad event kind", "GET", "/api/v1/events?kind=gossip", nil, nil, 400, "invalid_query", "kind"},
		{"bad last event id", "GET", "/api/v1/events", nil, []string{"Last-Event-ID", "yesterday"}, 400, "invalid_query", "Last-Event-ID"},
		{"last event id past the largest sequence", "GET", "/api/v1/events", nil, []string{"Last-Event-ID", "18446744073709551615"}, 400, "invalid_query", "Last-Event-ID"},
		{"since past the largest sequence", "GET", "/api/v1/events?since=18446744073709551615", nil, nil, 400, "invalid_query", "since"},
		{"negative since", "GET", "/api/v1/events?since=-1", nil, nil, 400, "invalid_query", "since"},
		{"job events since past the largest sequence", "GET", "/api/v1/jobs/somejob/events?since=18446744073709551615", nil, nil, 400, "invalid_query", "since"},
		{"job events last event id past the largest sequence", "GET", "/api/v1/jobs/somejob/events", nil, []string{"Last-Event-ID", "18446744073709551615"}, 400, "invalid_query", "Last-Event-ID"},
		{"duplicate key", "POST", "/api/v1/users", `{"name":"gina","name":"hugo"}`, nil, 400, "duplicate_field", "name"},
		{"duplicate key differing in case", "POST", "/api/v1/users", `{"name":"gina","NAME":"hugo"}`, nil, 400, "duplicate_field", "NAME"},
		{"duplicate nested key", "PATCH", "/api/v1/users/frank", `{"placement":{"nodes":["a"],"nodes":["b"]}}`, nil, 400, "duplicate_field", "placement.nodes"},
		{"duplicate key in an array element", "POST", "/api/v1/servers", `{"node":"n1","name":"x","inbounds":[{"protocol":"socks5","port":1080},{"port":1,"port":2}]}`, nil, 400, "duplicate_field", "inbounds[1].port"},
		{"duplicate key in a token request", "POST", "/api/v1/tokens", `{"name":"ci","role":"viewer","role":"admin"}`, nil, 400, "duplicate_field", "role"},
		{"bad deploy", "POST", "/api/v1/servers", `{"node":"n.1","name":"","inbounds":[{"protocol":"vless-reality","port":70000}]}`, nil, 400, "invalid", "inbounds[0].port"},
		{"unknown route", "GET", "/api/v1/nothing", nil, nil, 404, "route_not_found", ""},
		{"wrong method", "PUT", "/api/v1/users", `{}`, nil, 405, "method_not_allowed", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r response
			if rd, ok := c.body.(*strings.Reader); ok {
				r = h.doReader(c.method, c.path, "admin", rd)
			} else {
				r = h.do(c.method, c.path, "admin", c.body, c.hdr...)
			}
			p := h.problem(r)
			if r.status != c.status || p.Code != c.code {
				t.Fatalf("%d %s, want %d %s: %s", r.status, p.Code, c.status, c.code, r.body)
			}
			if c.field != "" {
				found := false
				for _, f := range p.Errors {
					found = found || f.Field == c.field
				}
				if !found {
					t.Fatalf("no error for field %s: %s", c.field, r.body)
				}
			}
		})
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("%d requests that failed validation reached NATS", n)
	}
}

// TestUnavailableServiceIsNamed stops nothing: it runs the gateway with no
// users service and checks the 503 says which service is not answering.
func TestUnavailableServiceIsNamed(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true, cfg: func(c *gateway.Config) { c.UpstreamTimeout = 500e6 }})
	r := h.do("GET", "/api/v1/users/alice", "viewer", nil)
	p := h.problem(r)
	if r.status != http.StatusServiceUnavailable || p.Service != "users service" || !strings.Contains(p.Detail, "vpn.users.get") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = h.do("GET", "/api/v1/servers", "viewer", nil)
	if p := h.problem(r); r.status != http.StatusServiceUnavailable || p.Service != "servers service" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

// TestRateLimitPerToken checks that a token over its rate gets 429 with
// Retry-After while another token is unaffected.
func TestRateLimitPerToken(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true, cfg: func(c *gateway.Config) { c.RateLimit, c.RateBurst = 0.01, 3 }})
	limited := 0
	for range 6 {
		r := h.do("GET", "/api/v1/nodes", "viewer", nil)
		if r.status == http.StatusTooManyRequests {
			limited++
			if h.problem(r).Code != "rate_limited" || r.header.Get("Retry-After") == "" {
				t.Fatalf("429 without code or Retry-After: %v %s", r.header, r.body)
			}
		}
	}
	if limited != 3 {
		t.Fatalf("%d of 6 requests limited, want 3", limited)
	}
	if r := h.do("GET", "/api/v1/nodes", "operator", nil); r.status != http.StatusOK {
		t.Fatalf("another token: %d", r.status)
	}
}

// TestMetricsByRouteAndStatus checks that the gateway's metrics count
// requests by route pattern and status, and the probes still answer. The
// public API listener does not serve /metrics: binaries serve the
// registry on their ops listener.
func TestMetricsByRouteAndStatus(t *testing.T) {
	h := newHarness(t)
	h.createUser("hank")
	h.do("GET", "/api/v1/users/hank", "viewer", nil)
	h.do("GET", "/api/v1/users/nobody", "viewer", nil)
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := h.do("GET", p, "", nil); r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}
	if r := h.do("GET", "/metrics", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics on the API: %d, want 404", r.status)
	}
	rec := httptest.NewRecorder()
	telemetry.MetricsHandler(h.metrics).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{
		`vpn_gateway_requests_total{route="GET /api/v1/users/{user}",status="200"} 1`,
		`vpn_gateway_requests_total{route="GET /api/v1/users/{user}",status="404"} 1`,
		`vpn_gateway_request_duration_seconds_bucket{route="POST /api/v1/users",status="201"`,
	} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
