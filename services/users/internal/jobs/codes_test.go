package jobs

import (
	"errors"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
)

// TestRefusalsCarryTheirCodes is issue 18.10: the two refusals callers
// answer precisely carry a machine-readable code (errs.CodeOf), so that
// nobody has to match their wording.
func TestRefusalsCarryTheirCodes(t *testing.T) {
	f := newFixture(t)
	if _, err := f.jobs.Create(f.ctx, job.CreateRequest{Kind: job.KindImport, Data: csvUsers("ok", 2)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  job.CreateRequest
		code string
	}{
		{"a filter that matches no users", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "zz"}}, errs.CodeFilterMatchesNothing},
		{"records with problems", job.CreateRequest{Kind: job.KindImport, Data: []byte("name,email\nfresh-1,x@example.com\nbad,not-an-address\n")}, errs.CodeInvalidRecords},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.jobs.Create(f.ctx, tc.req)
			if !errors.Is(err, errs.Invalid) || errs.CodeOf(err) != tc.code {
				t.Fatalf("refusal %v with code %q, want invalid with code %q", err, errs.CodeOf(err), tc.code)
			}
			if len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("refusal %v names no field", err)
			}
		})
	}
}
