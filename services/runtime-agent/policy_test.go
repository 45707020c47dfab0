package agent_test

import (
	"fmt"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
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
		old, err := f.running(srv.ID)
		if err != nil {
			t.Fatal(err)
		}
		f.stop()
		f.blockPrivate = block
		f.startAgent()
		// The adopted Xray runs the other policy: it is redeployed, and
		// bob is served by the new one.
		waitfor.Cond(t, applyWait, func() error {
			rs, err := f.running(srv.ID)
			if err != nil {
				return err
			}
			if rs.Instance == old.Instance {
				return fmt.Errorf("xray %s still runs the old policy", rs.Instance)
			}
			return nil
		})
		f.waitXrayHolds(srv, []string{u.ID}, "bob")
	}

	restartWith(true)
	if err := fetchOnce(client, target); err == nil {
		t.Fatal("bob reaches a loopback target with private networks blocked")
	}

	restartWith(false)
	connects(t, client, target, "bob after the agent restarted with private networks allowed again")
}
