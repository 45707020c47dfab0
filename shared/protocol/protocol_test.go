package protocol_test

import (
	"slices"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestDefaultsAreUserProtocols: the protocols marked Default are exactly
// user.Protocols, in its order, and come first in All.
func TestDefaultsAreUserProtocols(t *testing.T) {
	var defaults []user.Protocol
	for _, d := range protocol.All {
		if d.Default {
			defaults = append(defaults, d.Name)
		}
	}
	if !slices.Equal(defaults, user.Protocols) || !slices.Equal(protocol.Names()[:len(defaults)], defaults) {
		t.Fatalf("defaults %v, user.Protocols %v, All %v", defaults, user.Protocols, protocol.Names())
	}
	if protocol.Count != len(protocol.All) {
		t.Fatalf("Count = %d, All has %d", protocol.Count, len(protocol.All))
	}
}

// TestCredentialSlots: each protocol's Has and Clear see its own slot
// and no other's.
func TestCredentialSlots(t *testing.T) {
	full := func() user.Credentials {
		var c user.Credentials
		c.VLESS = &user.VLESS{UUID: "u"}
		c.Shadowsocks = &user.Shadowsocks{Key: "k"}
		c.SOCKS5 = &user.Proxy{Password: "s"}
		c.HTTP = &user.Proxy{Password: "h"}
		c.SetKey(protocol.Outline, user.Key{Password: "o"})
		return c
	}
	for _, d := range protocol.All {
		c := full()
		if !d.Has(c) {
			t.Fatalf("%s: Has is false on full credentials", d.Name)
		}
		before := full()
		d.Clear(&c)
		if d.Has(c) {
			t.Fatalf("%s: Has after Clear", d.Name)
		}
		for _, o := range protocol.All {
			if o.Name != d.Name && o.Has(c) != o.Has(before) {
				t.Fatalf("clearing %s changed %s", d.Name, o.Name)
			}
		}
		if d.Engine == "" {
			t.Fatalf("%s has no engine", d.Name)
		}
	}
}

// TestSetKeyCopiesTheMap: a copy of credentials keeps its keys when the
// original's change.
func TestSetKeyCopiesTheMap(t *testing.T) {
	var a user.Credentials
	a.SetKey(protocol.Outline, user.Key{Password: "one"})
	b := a
	a.SetKey(protocol.Outline, user.Key{Password: "two"})
	a.DropKey(protocol.Outline)
	if k, ok := b.Key(protocol.Outline); !ok || k.Password != "one" {
		t.Fatalf("copy sees %+v %v", k, ok)
	}
}
