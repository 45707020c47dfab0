package gateway_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestIdempotencyKeys is issue 18.3: an Idempotency-Key belongs to the
// token that sent it and to one body. A retry with the same body gets the
// first result; another body with the same key is 422
// idempotency_key_reused and creates nothing; another token's key never
// returns this token's user (credentials included); and concurrent creates
// with one key and different names leave no name claimed by nobody.
func TestIdempotencyKeys(t *testing.T) {
	h := newHarness(t)
	create := func(role, key string, body any) response {
		t.Helper()
		return h.do("POST", "/api/v1/users", role, body, "Idempotency-Key", key)
	}
	decode := func(t *testing.T, r response) user.User {
		t.Helper()
		var u user.User
		if r.status != http.StatusCreated || jsonUnmarshal(r.body, &u) != nil {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		return u
	}
	reused := func(t *testing.T, r response, field string) {
		t.Helper()
		var p problemDoc
		_ = jsonUnmarshal(r.body, &p)
		if r.status != http.StatusUnprocessableEntity || p.Code != "idempotency_key_reused" || len(p.Errors) != 1 || p.Errors[0].Field != field {
			t.Fatalf("%d %s, want 422 idempotency_key_reused naming %s", r.status, r.body, field)
		}
	}
	first := decode(t, create("operator", "key-1", user.CreateRequest{Name: "idem-a"}))

	t.Run("a retry with the same body gets the first user", func(t *testing.T) {
		again := decode(t, create("operator", "key-1", map[string]any{"name": "idem-a"}))
		if again.ID != first.ID {
			t.Fatalf("retry made %s, first was %s", again.ID, first.ID)
		}
	})

	t.Run("the same key with another body is 422 and creates nothing", func(t *testing.T) {
		reused(t, create("operator", "key-1", user.CreateRequest{Name: "idem-b"}), "Idempotency-Key")
		reused(t, create("operator", "key-1", user.CreateRequest{Name: "idem-a", Email: "a@example.com"}), "Idempotency-Key")
		reused(t, h.do("POST", "/api/v1/users", "operator", user.CreateRequest{Name: "idem-b", IdempotencyKey: "key-1"}), "idempotency_key")
		if r := h.do("GET", "/api/v1/users/idem-b", "operator", nil); r.status != http.StatusNotFound {
			t.Fatalf("a refused body was created: %d %s", r.status, r.body)
		}
	})

	t.Run("keys belong to the token that sent them", func(t *testing.T) {
		other := decode(t, create("admin", "key-1", user.CreateRequest{Name: "idem-c"}))
		if other.ID == first.ID {
			t.Fatalf("another token's key returned the operator's user %s", first.ID)
		}
		r := create("admin", "key-1", user.CreateRequest{Name: "idem-a"})
		if r.status != http.StatusUnprocessableEntity && r.status != http.StatusConflict {
			t.Fatalf("another token, same key and body: %d %s, want a refusal, never the operator's user", r.status, r.body)
		}
	})

	t.Run("concurrent creates with one key and different names", func(t *testing.T) {
		for i := range 10 {
			key := fmt.Sprintf("race-%d", i)
			names := []string{fmt.Sprintf("race-%d-a", i), fmt.Sprintf("race-%d-b", i)}
			statuses := make([]int, 2)
			var wg sync.WaitGroup
			for j, n := range names {
				wg.Go(func() { statuses[j] = create("operator", key, user.CreateRequest{Name: n}).status })
			}
			wg.Wait()
			created := 0
			for j, n := range names {
				switch statuses[j] {
				case http.StatusCreated:
					created++
					if r := h.do("GET", "/api/v1/users/"+n, "viewer", nil); r.status != http.StatusOK {
						t.Errorf("%s was answered 201 but reads %d", n, r.status)
					}
				case http.StatusUnprocessableEntity:
					if r := h.do("POST", "/api/v1/users", "operator", user.CreateRequest{Name: n}); r.status != http.StatusCreated {
						t.Errorf("%s, refused with 422, cannot be created now: %d %s", n, r.status, r.body)
					}
				default:
					t.Errorf("%s: %d", n, statuses[j])
				}
			}
			if created != 1 {
				t.Errorf("key %s: statuses %v, want one 201 and one 422", key, statuses)
			}
		}
	})

	t.Run("bulk jobs too", func(t *testing.T) {
		body := job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "idem-"}}
		post := func(role string, b job.CreateRequest) response {
			return h.do("POST", "/api/v1/jobs", role, b, "Idempotency-Key", "job-key")
		}
		var a, b, c job.CreateResponse
		if r := post("operator", body); r.status != http.StatusAccepted || jsonUnmarshal(r.body, &a) != nil {
			t.Fatalf("job: %d %s", r.status, r.body)
		}
		if r := post("operator", body); r.status != http.StatusAccepted || jsonUnmarshal(r.body, &b) != nil || b.Job.ID != a.Job.ID {
			t.Fatalf("retried job: %d %s, want job %s", r.status, r.body, a.Job.ID)
		}
		other := body
		other.Kind = job.KindDelete
		reused(t, post("operator", other), "Idempotency-Key")
		if r := post("admin", body); r.status != http.StatusAccepted || jsonUnmarshal(r.body, &c) != nil || c.Job.ID == a.Job.ID {
			t.Fatalf("another token's job: %d %s", r.status, r.body)
		}
		h.waitJob(a.Job.ID)
		h.waitJob(c.Job.ID)
	})
}
