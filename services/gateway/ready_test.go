package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// readyz is the decoded /readyz reply.
type readyz struct {
	Status string            `json:"status"`
	Failed map[string]string `json:"failed"`
}

// TestReadyzMeansTheAPIAnswers is issue 18.5: /readyz says ready only when
// the services the API needs answer a real request (users, jobs), so a
// client that waits for it never gets 503 from the API after.
func TestReadyzMeansTheAPIAnswers(t *testing.T) {
	h := newHarnessWith(t, options{noUsers: true})
	var rz readyz
	r := h.do("GET", "/readyz", "", nil)
	if err := json.Unmarshal(r.body, &rz); err != nil || r.status != http.StatusServiceUnavailable || rz.Failed["users service"] == "" || rz.Failed["jobs service"] == "" {
		t.Fatalf("readyz without the users and jobs services: %d %s, want 503 naming both", r.status, r.body)
	}
	var st struct {
		Ready    bool              `json:"ready"`
		NotReady map[string]string `json:"not_ready"`
	}
	h.mustJSON("GET", "/api/v1/status", "viewer", nil, http.StatusOK, &st)
	if st.Ready || st.NotReady["users service"] == "" {
		t.Fatalf("status without the users service: %+v", st)
	}

	h.startUsersUnwaited()
	waitfor.Cond(t, 30*time.Second, func() error {
		if r := h.do("GET", "/readyz", "", nil); r.status != http.StatusOK {
			return fmt.Errorf("readyz %d %s", r.status, r.body)
		}
		return nil
	})
	// Ready: the API answers at once, without a retry.
	var u user.User
	h.mustJSON("POST", "/api/v1/users", "operator", user.CreateRequest{Name: "first-ready"}, http.StatusCreated, &u)
	var jobs job.ListResponse
	h.mustJSON("GET", "/api/v1/jobs", "viewer", nil, http.StatusOK, &jobs)
}
