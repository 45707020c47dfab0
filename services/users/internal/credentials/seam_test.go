package credentials

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestEveryProtocolGenerates: every protocol of shared/protocol has a
// generator, and what it makes is what the protocol's Has sees.
func TestEveryProtocolGenerates(t *testing.T) {
	for _, d := range protocol.All {
		var c user.Credentials
		if err := Generate(&c, "uid", "", []user.Protocol{d.Name}); err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		for _, o := range protocol.All {
			if o.Has(c) != (o.Name == d.Name) {
				t.Fatalf("generating %s: %s has credentials: %v", d.Name, o.Name, o.Has(c))
			}
		}
	}
}
