package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// TestFromMapsEveryClass checks that classified errors take their status
// from errs.HTTPStatus, carry their fields and a hint, and that internal
// errors do not leak their detail.
func TestFromMapsEveryClass(t *testing.T) {
	for _, c := range []errs.Class{errs.Internal, errs.NotFound, errs.Invalid, errs.Conflict, errs.Unavailable, errs.Unauthorized, errs.Forbidden} {
		err := fmt.Errorf("doing it: %w", errs.New(c, "secret detail"))
		p := From(err)
		if p.Status != errs.HTTPStatus(c) || p.Code != c.String() || p.Hint == "" || !errors.Is(p, c) {
			t.Errorf("%s: %+v", c, p)
		}
		if (c == errs.Internal) == (p.Detail == "secret detail") {
			t.Errorf("%s: detail %q", c, p.Detail)
		}
	}
	p := From(errs.Fields(errs.FieldError{Field: "name", Rule: "must be set"}))
	if len(p.Errors) != 1 || p.Errors[0].Field != "name" {
		t.Errorf("fields %+v", p.Errors)
	}
}

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/api/v1/x", nil)
	lim := WithStatus(http.StatusTooManyRequests, errs.Unavailable, CodeRateLimited, "slow", "wait")
	lim.RetryAfter = 3
	Write(w, r, "rid", lim)
	var got Problem
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if w.Code != 429 || w.Header().Get("Content-Type") != ContentType || w.Header().Get("Retry-After") != "3" ||
		got.Type != TypePrefix+CodeRateLimited || got.Instance != "/api/v1/x" || got.RequestID != "rid" || got.Title != "Too Many Requests" {
		t.Fatalf("%d %v %+v", w.Code, w.Header(), got)
	}
}
