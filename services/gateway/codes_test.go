package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// TestJobRefusalsAnsweredByCode is issue 18.10: the gateway answers the
// jobs service's refusals by the code they carry (errs.Error.Code, across
// the wire by package bus), not by matching their text. A jobs service
// that words its refusals differently (this one, on the real bus adapter,
// in place of the registry) gets the same problems; one that sends the
// historic wording without a code gets the generic answer.
func TestJobRefusalsAnsweredByCode(t *testing.T) {
	// uncoded is the import file the reworded service refuses without a
	// code; its length differs from the other file's.
	const uncoded = "uncoded records"
	h := newHarnessWith(t, options{noUsers: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := micro.AddService(h.nc, micro.Config{Name: "reworded-jobs", Version: "0.0.1", QueueGroup: "reworded-jobs"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	create := bus.Endpoint(ctx, natstest.Logger(t), 5*time.Second, func(_ context.Context, req job.CreateRequest) (job.CreateResponse, error) {
		// Without a code, the refusals' historic wording means nothing:
		// the gateway matches no text.
		// The gateway sends import files through the job inputs store:
		// the file is told apart by its size.
		if req.Kind == job.KindImport && (string(req.Data) == uncoded || req.Input != nil && req.Input.Size == int64(len(uncoded))) {
			return job.CreateResponse{}, errs.Fields(errs.FieldError{Field: "line 3: email", Rule: "is not an address"})
		}
		if req.Kind == job.KindEnable {
			return job.CreateResponse{}, errs.Field("filter", "matches no users; nothing to do")
		}
		if req.Kind == job.KindImport {
			return job.CreateResponse{}, errs.WithCode(errs.Fields(
				errs.FieldError{Field: "record 3 / email", Rule: "is not an address"},
				errs.FieldError{Field: "record 9 / name", Rule: "is taken"},
			), errs.CodeInvalidRecords)
		}
		return job.CreateResponse{}, errs.WithCode(errs.Field("filter", "selects nobody at all"), errs.CodeFilterMatchesNothing)
	})
	if err := srv.AddEndpoint("create", create, micro.WithEndpointSubject(subject.JobsCmd(subject.JobsCreate))); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		body       job.CreateRequest
		code, hint string
		fields     int
	}{
		{"a filter that selects nobody", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "zz"}}, "filter_matches_nothing", "GET /api/v1/users", 1},
		{"records with problems", job.CreateRequest{Kind: job.KindImport, Data: []byte("name\nx\n")}, "invalid_records", "skip_invalid", 2},
		{"the historic filter wording without a code", job.CreateRequest{Kind: job.KindEnable, Filter: &job.Filter{NamePrefix: "zz"}}, "invalid", "fix the fields", 1},
		{"the historic records wording without a code", job.CreateRequest{Kind: job.KindImport, Data: []byte(uncoded)}, "invalid", "fix the fields", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do("POST", "/api/v1/jobs", "operator", c.body)
			var p problemDoc
			_ = jsonUnmarshal(r.body, &p)
			if r.status != http.StatusBadRequest || p.Code != c.code || !strings.Contains(p.Hint, c.hint) || len(p.Errors) != c.fields {
				t.Fatalf("%d %s, want 400 %s with %d fields and hint ~%q", r.status, r.body, c.code, c.fields, c.hint)
			}
		})
	}
}
