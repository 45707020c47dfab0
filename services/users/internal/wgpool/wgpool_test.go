package wgpool

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"pgregory.net/rapid"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// TestPoolProperties runs random sequences of allocations, releases and
// restores against a pool and checks after every step: no address is
// shared, every address is a user address of the pool with its IPv6 pair,
// an owner keeps its address, a full pool says so (and only then), and a
// pool rebuilt from the assignments and fed the same requests allocates
// the same addresses (determinism).
func TestPoolProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		bits := rapid.IntRange(24, 30).Draw(t, "bits")
		v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rapid.IntRange(0, 255).Draw(t, "b")), 0, 0}), bits).Masked()
		var v6 netip.Prefix
		if rapid.Bool().Draw(t, "v6") {
			v6 = netip.MustParsePrefix("fd00:8::/64")
		}
		p, err := New(v4, v6)
		if err != nil {
			t.Fatal(err)
		}
		owner := rapid.SampledFrom(func() []string {
			out := make([]string, 300)
			for i := range out {
				out[i] = fmt.Sprintf("user-%d", i)
			}
			return out
		}())
		for step := range rapid.IntRange(1, 400).Draw(t, "steps") {
			o := owner.Draw(t, fmt.Sprintf("owner%d", step))
			switch rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("op%d", step)) {
			case 0, 1:
				before, had := p.Get(o)
				full := p.Len() >= p.Capacity()
				a, err := p.Allocate(o)
				switch {
				case had && (err != nil || a != before):
					t.Fatalf("%s had %v, allocating again gave %v, %v", o, before, a, err)
				case !had && full:
					if !errors.Is(err, ErrFull) || !errors.Is(err, errs.Conflict) || errs.FieldsOf(err)[0].Field != Field {
						t.Fatalf("full pool: got %v", err)
					}
				case err != nil:
					t.Fatalf("allocating in a pool of %d/%d: %v", p.Len(), p.Capacity(), err)
				}
			case 2:
				p.Release(o)
				if _, ok := p.Get(o); ok {
					t.Fatalf("%s still holds an address after release", o)
				}
			case 3:
				// Rebuild from the assignments (as the registry loads
				// them): same state, same next allocation.
				q, err := New(v4, v6)
				if err != nil {
					t.Fatal(err)
				}
				for o, a := range p.Assignments() {
					if err := q.Restore(o, a); err != nil {
						t.Fatalf("restoring %s %v: %v", o, a, err)
					}
				}
				a1, err1 := p.Allocate(o)
				a2, err2 := q.Allocate(o)
				if a1 != a2 || (err1 == nil) != (err2 == nil) {
					t.Fatalf("rebuilt pool allocates %v (%v), the original %v (%v)", a2, err2, a1, err1)
				}
			}
			check(t, p)
		}
	})
}

func check(t *rapid.T, p *Pool) {
	seen4, seen6 := map[netip.Addr]string{}, map[netip.Addr]string{}
	server := p.Server()
	for o, a := range p.Assignments() {
		if prev, dup := seen4[a.V4]; dup {
			t.Fatalf("%s and %s share %s", prev, o, a.V4)
		}
		seen4[a.V4] = o
		if !p.v4.Contains(a.V4) || a.V4 == server.V4 || a.V4 == p.v4.Addr() || a.V4 == p.v4.Masked().Addr() {
			t.Fatalf("%s got %s, not a user address of %s", o, a.V4, p.v4)
		}
		if bcast := p.at(p.size - 1).V4; a.V4 == bcast {
			t.Fatalf("%s got the broadcast address %s", o, a.V4)
		}
		if p.v6.IsValid() != a.V6.IsValid() || (a.V6.IsValid() && !p.v6.Contains(a.V6)) {
			t.Fatalf("%s got v6 %v from %v", o, a.V6, p.v6)
		}
		if a.V6.IsValid() {
			if prev, dup := seen6[a.V6]; dup {
				t.Fatalf("%s and %s share %s", prev, o, a.V6)
			}
			seen6[a.V6] = o
		}
	}
	if len(seen4) != p.Len() || p.Len() > p.Capacity() {
		t.Fatalf("%d addresses for %d owners, capacity %d", len(seen4), p.Len(), p.Capacity())
	}
}

// TestFullPoolNamesFieldAndRule fills a /30 (one user address).
func TestFullPoolNamesFieldAndRule(t *testing.T) {
	p, err := New(netip.MustParsePrefix("10.9.0.0/30"), netip.Prefix{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocate("u1")
	if err != nil || a.V4 != netip.MustParseAddr("10.9.0.2") || p.Server().V4 != netip.MustParseAddr("10.9.0.1") {
		t.Fatalf("got %v, %v (server %v)", a, err, p.Server())
	}
	_, err = p.Allocate("u2")
	if !errors.Is(err, ErrFull) || !errors.Is(err, errs.Conflict) {
		t.Fatalf("got %v", err)
	}
	f := errs.FieldsOf(err)
	if len(f) != 1 || f[0] != (errs.FieldError{Field: Field, Rule: "is full: all 1 addresses of 10.9.0.0/30 are allocated"}) {
		t.Fatalf("fields %v", f)
	}
}

func TestNewRefusesBadPrefixes(t *testing.T) {
	cases := map[string]struct {
		v4, v6 string
		field  string
	}{
		"v6 as v4":        {"fd00::/64", "", Field + ".ipv4"},
		"too small":       {"10.0.0.0/31", "", Field + ".ipv4"},
		"host bits":       {"10.8.0.1/16", "", Field + ".ipv4"},
		"not ula":         {"10.8.0.0/16", "2001:db8::/64", Field + ".ipv6"},
		"v6 smaller":      {"10.8.0.0/16", "fd00::/120", Field + ".ipv6"},
		"v6 host bits on": {"10.8.0.0/16", "fd00::1/64", Field + ".ipv6"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var v6 netip.Prefix
			if tc.v6 != "" {
				v6 = netip.MustParsePrefix(tc.v6)
			}
			_, err := New(netip.MustParsePrefix(tc.v4), v6)
			if !errors.Is(err, errs.Invalid) || errs.FieldsOf(err)[0].Field != tc.field {
				t.Fatalf("got %v, want invalid %s", err, tc.field)
			}
		})
	}
}

func TestRestoreRefusesAnotherOwnersAddress(t *testing.T) {
	p, err := New(netip.MustParsePrefix("10.8.0.0/24"), netip.MustParsePrefix("fd00:8::/64"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocate("u1")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Restore("u2", a); !errors.Is(err, errs.Conflict) {
		t.Fatalf("got %v, want conflict", err)
	}
	if err := p.Restore("u3", Addr{V4: p.Server().V4, V6: p.Server().V6}); !errors.Is(err, errs.Invalid) {
		t.Fatalf("restoring the server's address: %v", err)
	}
	if err := p.Restore("u3", Addr{V4: netip.MustParseAddr("10.8.0.9")}); !errors.Is(err, errs.Invalid) {
		t.Fatalf("restoring without the ipv6 pair: %v", err)
	}
}
