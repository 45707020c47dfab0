package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestPagesFitADefaultMaxPayload: on a NATS with the default 1 MiB
// max_payload (a cluster's), a page of 1,000 users with 1 KiB notes is
// larger than one message. The page is cut to what fits, with a next
// cursor, and walking the pages returns every user exactly once.
func TestPagesFitADefaultMaxPayload(t *testing.T) {
	const n = 1000
	h := newHarnessWith(t, options{noHealth: true, nats: natstest.Options{MaxPayload: natstest.DefaultMaxPayload}})
	note := strings.Repeat("n", 1024)
	var file strings.Builder
	file.WriteString("name,note\n")
	for i := range n {
		fmt.Fprintf(&file, "u%04d,%s\n", i, note)
	}
	body, ct := form(t, []byte(file.String()), "format", "csv")
	r := h.postForm("operator", body, ct)
	var created job.CreateResponse
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &created) != nil || created.Job == nil {
		t.Fatalf("import: %d %s", r.status, r.body)
	}
	if rec := h.waitJob(created.Job.ID); rec.State != job.StateCompleted {
		t.Fatalf("import ended %s: %+v", rec.State, rec)
	}
	seen := map[string]int{}
	pages := 0
	path := fmt.Sprintf("/api/v1/users?limit=%d", n)
	for path != "" {
		var page user.ListResponse
		h.mustJSON("GET", path, "operator", nil, http.StatusOK, &page)
		pages++
		for _, u := range page.Users {
			seen[u.Name]++
			if u.Note != note {
				t.Fatalf("user %s came back with a note of %d bytes", u.Name, len(u.Note))
			}
		}
		path = ""
		if page.NextCursor != "" {
			path = fmt.Sprintf("/api/v1/users?limit=%d&cursor=%s", n, page.NextCursor)
		}
	}
	if pages < 2 {
		t.Fatalf("%d users with 1 KiB notes came in %d page; on a 1 MiB max_payload they cannot fit in one", n, pages)
	}
	if len(seen) != n {
		t.Fatalf("the pages held %d distinct users, want %d", len(seen), n)
	}
	for name, k := range seen {
		if k != 1 {
			t.Fatalf("user %s listed %d times", name, k)
		}
	}
}
