package errs_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func TestClassSurvivesWrapping(t *testing.T) {
	base := errs.New(errs.Conflict, "name %q is taken", "alice")
	wrapped := fmt.Errorf("creating user: %w", base)
	if !errors.Is(wrapped, errs.Conflict) || errors.Is(wrapped, errs.NotFound) {
		t.Fatalf("errors.Is does not see the class through %v", wrapped)
	}
	if errs.ClassOf(wrapped) != errs.Conflict {
		t.Fatalf("ClassOf = %v", errs.ClassOf(wrapped))
	}
	if errs.ClassOf(errors.New("x")) != errs.Internal {
		t.Fatal("unclassified errors must be Internal")
	}
	if errs.ClassOf(fmt.Errorf("waiting: %w", context.DeadlineExceeded)) != errs.Unavailable {
		t.Fatal("deadlines must be Unavailable")
	}
}

func TestFieldsReadAsOneLine(t *testing.T) {
	err := errs.Fields(
		errs.FieldError{Field: "name", Rule: "must be 3-32 characters of A-Z a-z 0-9 _ -"},
		errs.FieldError{Field: "email", Rule: "must be an address"},
	)
	want := "invalid input: name: must be 3-32 characters of A-Z a-z 0-9 _ -; email: must be an address"
	if err.Error() != want {
		t.Fatalf("got %q", err)
	}
	if errs.Fields() != nil {
		t.Fatal("no fields must give nil")
	}
	if got := errs.FieldsOf(fmt.Errorf("x: %w", err)); len(got) != 2 {
		t.Fatalf("FieldsOf = %v", got)
	}
}

func TestCodeRoundTrip(t *testing.T) {
	for c := errs.Internal; c <= errs.Forbidden; c++ {
		if got := errs.FromCode(errs.Code(c)); got != c {
			t.Errorf("FromCode(Code(%v)) = %v", c, got)
		}
		if got := errs.ParseClass(c.String()); got != c {
			t.Errorf("ParseClass(%q) = %v", c.String(), got)
		}
	}
}

// TestCodeIsCarried checks the machine-readable code: set on any error,
// kept through wrapping (fmt %w and Wrap), beside the class, message and
// fields it leaves alone.
func TestCodeIsCarried(t *testing.T) {
	base := errs.Field("filter", "selects nobody")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"none", base, ""},
		{"on an errs.Error", errs.WithCode(base, errs.CodeFilterMatchesNothing), errs.CodeFilterMatchesNothing},
		{"through fmt wrapping", fmt.Errorf("planning: %w", errs.WithCode(base, errs.CodeFilterMatchesNothing)), errs.CodeFilterMatchesNothing},
		{"through errs.Wrap", errs.Wrap(errs.Invalid, errs.WithCode(base, errs.CodeInvalidRecords), "importing"), errs.CodeInvalidRecords},
		{"on a plain error", errs.WithCode(fmt.Errorf("x: %w", base), errs.CodeInvalidRecords), errs.CodeInvalidRecords},
		{"nil", nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := errs.CodeOf(c.err); got != c.want {
				t.Fatalf("CodeOf(%v) = %q, want %q", c.err, got, c.want)
			}
			if c.err != nil && (!errors.Is(c.err, errs.Invalid) || len(errs.FieldsOf(c.err)) != 1 || errs.Message(c.err) == "") {
				t.Fatalf("%v lost its class, fields or message", c.err)
			}
		})
	}
	if errs.WithCode(nil, "x") != nil {
		t.Fatal("WithCode(nil) must be nil")
	}
}
