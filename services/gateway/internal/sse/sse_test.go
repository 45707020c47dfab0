package sse

import (
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// TestParseID checks that a resume point is a stream sequence a consumer
// can start after: one past the largest sequence would overflow to 0, so
// it is refused as invalid input naming the field, not sent to JetStream.
func TestParseID(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{strconv.FormatUint(MaxID, 10), MaxID, true},
		{strconv.FormatUint(MaxID+1, 10), 0, false},
		{strconv.FormatUint(math.MaxUint64, 10), 0, false},
		{"18446744073709551616", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"yesterday", 0, false},
		{"", 0, false},
	}
	for _, c := range cases {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParseID("since", c.in)
			if !c.ok {
				if !errors.Is(err, errs.Invalid) {
					t.Fatalf("ParseID(%q) = %d, %v; want an invalid-input error", c.in, got, err)
				}
				if fe := errs.FieldsOf(err); len(fe) != 1 || fe[0].Field != "since" {
					t.Fatalf("ParseID(%q): fields %+v, want one naming since", c.in, fe)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseID(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
}
