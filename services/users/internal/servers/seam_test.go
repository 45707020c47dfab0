package servers

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
)

// TestEveryProtocolHasAnInboundKind: a protocol of shared/protocol the
// registry cannot check inbounds of would be accepted unchecked.
func TestEveryProtocolHasAnInboundKind(t *testing.T) {
	for _, d := range protocol.All {
		if _, ok := inboundKinds[d.Name]; !ok {
			t.Errorf("protocol %s has no inboundKind", d.Name)
		}
	}
}
