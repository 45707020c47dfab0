package xray

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// TestEveryXrayProtocolHasAKind: a protocol of shared/protocol served by
// Xray that this package has no kind for would be refused by every agent.
func TestEveryXrayProtocolHasAKind(t *testing.T) {
	for _, d := range protocol.All {
		k, ok := kinds[Protocol(d.Name)]
		if ok != (d.Engine == server.EngineXray) {
			t.Errorf("protocol %s of engine %s: kind here %v", d.Name, d.Engine, ok)
			continue
		}
		if ok && (k.user == nil || k.render == nil || k.credential == nil || len(k.uses) == 0 || k.account == nil && k.accountKind == "") {
			t.Errorf("protocol %s has an incomplete kind", d.Name)
		}
	}
}
