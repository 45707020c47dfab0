package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// TestServersOverHTTP deploys, reads, changes and removes a server through
// the API against the real servers service; restart and logs go to the
// node's agent, which is not running here, so they say so.
func TestServersOverHTTP(t *testing.T) {
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.UpstreamTimeout = time.Second }})
	h.putNode("node-1", time.Now())
	deploy := map[string]any{"node": "node-1", "name": "reality", "inbounds": []map[string]any{
		{"protocol": "vless-reality", "port": 8443, "dest": "www.example.com:443"},
	}}
	var s server.Server
	r := h.mustJSON("POST", "/api/v1/servers", "operator", deploy, http.StatusCreated, &s)
	if r.header.Get("Location") != "/api/v1/servers/"+s.ID || s.Node != "node-1" || len(s.Inbounds) != 1 || s.Inbounds[0].Reality == nil {
		t.Fatalf("deployed %+v", s)
	}
	deploy["node"] = "node-9"
	if r := h.do("POST", "/api/v1/servers", "operator", deploy); r.status != http.StatusBadRequest || h.problem(r).Errors[0].Field != "node" {
		t.Fatalf("unknown node: %d %s", r.status, r.body)
	}

	var list server.ListResponse
	h.mustJSON("GET", "/api/v1/servers?node=node-1", "viewer", nil, http.StatusOK, &list)
	if len(list.Servers) != 1 || list.Servers[0].ID != s.ID {
		t.Fatalf("list %+v", list)
	}
	var byName server.Server
	h.mustJSON("GET", "/api/v1/servers/reality", "viewer", nil, http.StatusOK, &byName)
	if byName.ID != s.ID || byName.Inbounds[0].Reality.PrivateKey != "" || s.Inbounds[0].Reality.PrivateKey == "" {
		t.Fatalf("by name (as viewer, no private key): %+v", byName)
	}
	var renamed server.Server
	h.mustJSON("PATCH", "/api/v1/servers/"+s.ID, "operator", map[string]any{"name": "reality-2"}, http.StatusOK, &renamed)
	if renamed.Name != "reality-2" {
		t.Fatalf("renamed %+v", renamed)
	}

	for _, p := range []string{"POST /api/v1/servers/reality-2/restart", "GET /api/v1/servers/reality-2/logs"} {
		method, path, _ := strings.Cut(p, " ")
		r := h.do(method, path, "operator", nil)
		if pr := h.problem(r); r.status != http.StatusServiceUnavailable || pr.Service != "agent of node node-1" {
			t.Fatalf("%s: %d %s", p, r.status, r.body)
		}
	}

	h.mustJSON("DELETE", "/api/v1/servers/reality-2", "operator", nil, http.StatusOK, nil)
	if r := h.do("GET", "/api/v1/servers/"+s.ID, "viewer", nil); r.status != http.StatusNotFound {
		t.Fatalf("after remove: %d %s", r.status, r.body)
	}
}
