package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestHealthThroughTheGateway drives the health routes against the real
// health service: node health in the node list (down beside a fresh
// heartbeat's judgement) and in the links' healthy-node filter, a node's
// stats, a user's usage, and the NodeDown alert listed and acknowledged.
func TestHealthThroughTheGateway(t *testing.T) {
	h := newHarness(t)
	alice := h.createUser("alice")
	h.putNode("node-up", time.Now())
	h.putNode("node-gone", time.Now().Add(-time.Hour))
	h.putServer("srv-up", "node-up")
	h.putServer("srv-gone", "node-gone")

	var list api.NodeList
	waitfor.Cond(t, 30*time.Second, func() error {
		h.putNode("node-up", time.Now()) // its agent keeps beating
		h.mustJSON("GET", "/api/v1/nodes", "viewer", nil, http.StatusOK, &list)
		for _, n := range list.Nodes {
			if n.HealthFrom != api.HealthFromService || n.Health == "" {
				return fmt.Errorf("node %s: health %q from %s", n.ID, n.Health, n.HealthFrom)
			}
		}
		return nil
	})
	for _, n := range list.Nodes {
		if up := n.ID == "node-up"; n.Healthy != up || (!up && n.Health != event.HealthDown) || (up && n.Health == event.HealthDown) {
			t.Errorf("node %s: healthy %v, health %s (%s)", n.ID, n.Healthy, n.Health, n.HealthReason)
		}
	}
	var links user.LinksResponse
	h.mustJSON("GET", "/api/v1/users/alice/links", "operator", nil, http.StatusOK, &links)
	if len(links.Links) != 1 || links.Links[0].Server != "srv-up" {
		t.Fatalf("links on healthy nodes: %+v", links.Links)
	}

	var stats event.StatsReply
	h.mustJSON("GET", "/api/v1/nodes/node-up/stats?step=1m&from="+time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), "viewer", nil, http.StatusOK, &stats)
	if stats.Node != "node-up" || stats.Step != time.Minute || stats.Resolution == "" || stats.Points == nil {
		t.Fatalf("stats %+v", stats)
	}
	var usage event.UsageReply
	h.mustJSON("GET", "/api/v1/users/alice/usage?step=1m", "viewer", nil, http.StatusOK, &usage)
	if usage.User != alice.ID || usage.Points == nil {
		t.Fatalf("usage %+v", usage)
	}

	var alerts event.AlertsReply
	waitfor.Cond(t, 30*time.Second, func() error {
		h.mustJSON("GET", "/api/v1/alerts?severity=critical&node=node-gone", "viewer", nil, http.StatusOK, &alerts)
		if len(alerts.Alerts) == 0 || alerts.Alerts[0].Rule != "NodeDown" {
			return fmt.Errorf("alerts %+v", alerts.Alerts)
		}
		return nil
	})
	var acked event.Alert
	h.mustJSON("POST", "/api/v1/alerts/"+alerts.Alerts[0].Fingerprint+"/ack", "operator", map[string]string{"comment": "host retired"}, http.StatusOK, &acked)
	if !strings.HasPrefix(acked.AckedBy, "operator test (") || acked.Comment != "host retired" {
		t.Fatalf("acked %+v", acked)
	}

	for _, c := range []struct {
		method, path string
		status       int
		code, field  string
	}{
		{"GET", "/api/v1/nodes/node-up/stats?step=soon", 400, "invalid_query", "step"},
		{"GET", "/api/v1/nodes/node-up/stats?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", 400, "invalid_query", "from"},
		{"GET", "/api/v1/nodes/nowhere/stats", 404, "not_found", ""},
		{"GET", "/api/v1/alerts?status=angry", 400, "invalid_query", "status"},
		{"POST", "/api/v1/alerts/nosuchalert/ack", 404, "not_found", "alert"},
	} {
		r := h.do(c.method, c.path, "operator", nil)
		p := h.problem(r)
		if r.status != c.status || p.Code != c.code || (c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field)) {
			t.Errorf("%s %s: %d %s %+v, want %d %s %s", c.method, c.path, r.status, p.Code, p.Errors, c.status, c.code, c.field)
		}
	}
}

// TestNodeHealthFallsBackToHeartbeat runs the gateway without the health
// service: nodes are judged by heartbeat age, and links still work.
func TestNodeHealthFallsBackToHeartbeat(t *testing.T) {
	h := newHarnessWith(t, options{noHealth: true})
	h.createUser("bob")
	h.putNode("node-up", time.Now())
	h.putNode("node-gone", time.Now().Add(-time.Hour))
	h.putServer("srv-up", "node-up")
	h.putServer("srv-gone", "node-gone")
	var list api.NodeList
	h.mustJSON("GET", "/api/v1/nodes", "viewer", nil, http.StatusOK, &list)
	for _, n := range list.Nodes {
		if n.HealthFrom != api.HealthFromHeartbeat || n.Health != "" || n.Healthy != (n.ID == "node-up") {
			t.Errorf("node %+v", n)
		}
	}
	var links user.LinksResponse
	h.mustJSON("GET", "/api/v1/users/bob/links", "operator", nil, http.StatusOK, &links)
	if len(links.Links) != 1 || links.Links[0].Server != "srv-up" {
		t.Fatalf("links: %+v", links.Links)
	}
	r := h.do("GET", "/api/v1/alerts", "viewer", nil)
	if p := h.problem(r); r.status != http.StatusServiceUnavailable || p.Service != "health service" {
		t.Fatalf("alerts without health: %d %s", r.status, r.body)
	}
}
