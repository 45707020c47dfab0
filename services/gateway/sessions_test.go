package gateway_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
)

// TestCutSessionsIsANoOpWhereNothingRuns: ending a user's sessions asks
// every node that is up; a node that is down is skipped and an up node
// whose agent does not answer is reported, and neither fails the request.
// (The cut itself, against real agents and clients: runtime-agent's
// TestLimitsBite.)
func TestCutSessionsIsANoOpWhereNothingRuns(t *testing.T) {
	h := newHarness(t)
	u := h.createUser("kicked")

	var none api.CutSessionsResponse
	h.mustJSON("POST", "/api/v1/users/kicked/sessions/cut", "operator", nil, http.StatusOK, &none)
	if none.User != u.ID || none.Closed != 0 || len(none.Nodes) != 0 {
		t.Fatalf("cut with no nodes = %+v", none)
	}

	h.putNode("gone", time.Now().Add(-time.Hour))
	h.putNode("mute", time.Now())
	var got api.CutSessionsResponse
	h.mustJSON("POST", "/api/v1/users/"+u.ID+"/sessions/cut", "operator", nil, http.StatusOK, &got)
	if got.Closed != 0 || len(got.Nodes) != 2 {
		t.Fatalf("cut = %+v", got)
	}
	for _, n := range got.Nodes {
		switch n.Node {
		case "gone":
			if n.Skipped != "down" || n.Error != "" {
				t.Errorf("node down: %+v", n)
			}
		case "mute":
			if n.Skipped != "" || n.Error == "" {
				t.Errorf("node up without an agent: %+v", n)
			}
		default:
			t.Errorf("unexpected node %+v", n)
		}
	}

	if r := h.do("POST", "/api/v1/users/nobody/sessions/cut", "operator", nil); r.status != http.StatusNotFound {
		t.Fatalf("cut of an unknown user: %d", r.status)
	}
	if r := h.do("POST", "/api/v1/users/kicked/sessions/cut", "viewer", nil); r.status != http.StatusForbidden {
		t.Fatalf("cut by a viewer: %d", r.status)
	}
}
