package agent_test

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestPrivateNetworkPolicyConverges: --allow-private-networks is part of
// what a server runs, like its spec. An agent restarted with the policy
// changed converges the servers it adopts, both ways: off, a user no
// longer reaches a loopback target through the server; on again, it does.
func TestPrivateNetworkPolicyConverges(t *testing.T) {
	f := newFleet(t, "process")
	f.startAgent()
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t) // on loopback

	srv := f.createServer("edge", dest)
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	u := f.createUser("bob")
	client := xraytest.StartClient(t, xraytest.Binary(t), outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
	connects(t, client, target, "bob with private networks allowed")

	restartWith := func(block bool) {
		t.Helper()
		// The adopted Xray runs the other policy: it is redeployed, and
		// bob is served by the new one.
		f.restartRedeploys(srv, []string{u.ID}, "the old policy", func() { f.blockPrivate = block })
	}

	restartWith(true)
	if err := fetchOnce(client, target); err == nil {
		t.Fatal("bob reaches a loopback target with private networks blocked")
	}

	restartWith(false)
	connects(t, client, target, "bob after the agent restarted with private networks allowed again")
}
