package links

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
)

// TestEveryProtocolHasALinkKind: a protocol of shared/protocol without a
// kind here would give its users no link and no subscription entry.
func TestEveryProtocolHasALinkKind(t *testing.T) {
	for _, d := range protocol.All {
		k, ok := kinds[d.Name]
		if !ok || k.scheme == "" || k.params == nil || k.build == nil || k.parse == nil || k.clash == nil || k.singBox == nil {
			t.Errorf("protocol %s has no complete link kind", d.Name)
		}
	}
}
