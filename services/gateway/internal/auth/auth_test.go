package auth

import (
	"strings"
	"testing"
)

func TestTokenShapeAndHash(t *testing.T) {
	tok, id := newToken()
	got, ok := IDOf(tok)
	if !ok || got != id || !ValidID(id) || !strings.HasPrefix(tok, "vpn_"+id+"_") || len(tok) != 4+12+1+64 {
		t.Fatalf("token %q id %q", tok, id)
	}
	if !matches(tok, Hash(tok)) || matches(tok+"0", Hash(tok)) {
		t.Fatal("hash does not tell tokens apart")
	}
	other, _ := newToken()
	if other == tok {
		t.Fatal("two tokens alike")
	}
	for _, bad := range []string{"", "vpn_", tok[:len(tok)-1], strings.ToUpper(tok), "xyz_" + tok[4:], strings.Replace(tok, "_", "-", 2)} {
		if _, ok := IDOf(bad); ok {
			t.Errorf("IDOf(%q) accepted", bad)
		}
	}
}

func TestRolesAllow(t *testing.T) {
	cases := []struct {
		have, need Role
		ok         bool
	}{
		{Admin, Admin, true}, {Admin, Viewer, true}, {Operator, Operator, true}, {Operator, Admin, false},
		{Viewer, Operator, false}, {Viewer, Viewer, true}, {"root", Viewer, false}, {"", Viewer, false},
	}
	for _, c := range cases {
		if got := c.have.Allows(c.need); got != c.ok {
			t.Errorf("%q allows %q = %v", c.have, c.need, got)
		}
	}
}

func TestLimiterPerKey(t *testing.T) {
	l := NewLimiter(0.001, 2)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.Allow("a"); ok != want {
			t.Fatalf("request %d allowed=%v", i, ok)
		}
	}
	if ok, wait := l.Allow("a"); ok || wait <= 0 {
		t.Fatalf("over the limit: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.Allow("b"); !ok {
		t.Fatal("another key was limited")
	}
	if ok, _ := NewLimiter(0, 1).Allow("a"); !ok {
		t.Fatal("a disabled limiter refused")
	}
}
