package gateway_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// auditOf returns the audit records of the token of role.
func (h *harness) auditOf(t *testing.T, role string) []event.Audit {
	t.Helper()
	id, _ := auth.IDOf(h.tokens[role])
	var out []event.Audit
	for _, env := range natstestEvents(t, h) {
		var a event.Audit
		if err := env.Decode(&a); err != nil {
			t.Fatalf("audit record %s: %v", env.ID, err)
		}
		if a.Actor == id {
			out = append(out, a)
		}
	}
	return out
}

// calls is how many calls records stand for: a summary counts its Count.
func calls(records []event.Audit) (n int) {
	for _, a := range records {
		n += max(a.Count, 1)
	}
	return n
}

// TestRefusalsDoNotFloodTheAudit is the abuse of issue 18.2: a viewer
// sending hundreds of forbidden and rate-limited mutations must not push
// real history out of EVENTS. The first refusal of each kind (actor,
// action, status) in a window is recorded as it happens, the rest as one
// summary with their count; every real change is still recorded alone.
func TestRefusalsDoNotFloodTheAudit(t *testing.T) {
	t.Run("a flood is summarised", func(t *testing.T) {
		h := newHarnessWith(t, options{cfg: func(c *gateway.Config) {
			c.RateLimit, c.RateBurst = 0.01, 40
			c.AuditWindow = time.Hour // summaries are written when the gateway closes
		}})
		const refused, created = 300, 20
		for i := range refused {
			if r := h.do("POST", "/api/v1/users/someone/disable", "viewer", nil); r.status != http.StatusForbidden && r.status != http.StatusTooManyRequests {
				t.Fatalf("refusal %d: %d %s", i, r.status, r.body)
			}
			if i%(refused/created) == 0 {
				h.createUser(fmt.Sprintf("real-%03d", i))
			}
		}
		h.gw.Close()

		var viewer, operator []event.Audit
		waitfor.Cond(t, 20*time.Second, func() error {
			viewer, operator = h.auditOf(t, "viewer"), h.auditOf(t, "operator")
			if calls(viewer) != refused || len(operator) != created {
				return fmt.Errorf("%d viewer records for %d calls (want %d), %d operator records (want %d)", len(viewer), calls(viewer), refused, len(operator), created)
			}
			return nil
		})
		byStatus := map[int][]event.Audit{}
		for _, a := range viewer {
			byStatus[a.Status] = append(byStatus[a.Status], a)
		}
		if len(viewer) != 4 || len(byStatus[http.StatusForbidden]) != 2 || len(byStatus[http.StatusTooManyRequests]) != 2 {
			t.Fatalf("viewer records %+v: want a first record and a summary of each of 403 and 429", viewer)
		}
		for status, rs := range byStatus {
			first, summary := rs[0], rs[1]
			if first.Count > 1 || summary.Count < 2 || summary.Action != "users.disable" || summary.Target != "user/someone" || summary.Time.Before(first.Time) {
				t.Errorf("status %d: first %+v, summary %+v", status, first, summary)
			}
		}
		if byStatus[http.StatusForbidden][1].Result != event.AuditDenied || byStatus[http.StatusTooManyRequests][1].Result != event.AuditError {
			t.Errorf("results %+v", viewer)
		}
		for _, a := range operator {
			if a.Action != "users.create" || a.Result != event.AuditOK || a.Count > 1 {
				t.Errorf("operator record %+v", a)
			}
		}
	})

	t.Run("each window ends with its summary", func(t *testing.T) {
		h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.AuditWindow = 300 * time.Millisecond }})
		for range 5 {
			h.do("POST", "/api/v1/users/someone/enable", "viewer", nil)
		}
		waitfor.Cond(t, 20*time.Second, func() error {
			rs := h.auditOf(t, "viewer")
			if len(rs) != 2 || rs[0].Count > 1 || rs[1].Count != 4 {
				return fmt.Errorf("viewer records %+v, want the first and a summary of 4", rs)
			}
			return nil
		})
		h.do("POST", "/api/v1/users/someone/enable", "viewer", nil)
		waitfor.Cond(t, 20*time.Second, func() error {
			if rs := h.auditOf(t, "viewer"); len(rs) != 3 || rs[2].Count > 1 {
				return fmt.Errorf("viewer records %+v, want a new window's first record", rs)
			}
			return nil
		})
	})
}
