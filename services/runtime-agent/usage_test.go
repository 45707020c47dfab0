package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// usageFixture is a deployed server, a user with a SOCKS5 client on it and
// a target to pull bytes from.
type usageFixture struct {
	f      *fleet
	srv    server.Server
	u      user.User
	client *xraytest.Client
	target string
}

func newUsageFixture(t *testing.T, interval time.Duration) *usageFixture {
	f := newFleet(t, "process")
	f.usage = interval
	f.startAgent()
	srv := f.createServer("metered", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	u := f.createUser("metered")
	link, ok := f.links(u.ID, srv.ID)[user.SOCKS5]
	if !ok {
		t.Fatal("no socks5 link")
	}
	fx := &usageFixture{f: f, srv: srv, u: u, client: xraytest.StartClient(t, xraytest.Binary(t), outbound(t, link)), target: xraytest.StartHTTPTarget(t)}
	connects(t, fx.client, fx.target, "metered over socks5")
	return fx
}

// push pulls n bytes through the tunnel.
func (fx *usageFixture) push(t *testing.T, n int) {
	t.Helper()
	body, err := fx.client.Get(context.Background(), fmt.Sprintf("%s/bytes?n=%d", fx.target, n))
	if err != nil || len(body) != n {
		t.Fatalf("pulling %d bytes through the tunnel: got %d, %v", n, len(body), err)
	}
}

// counted is what Xray has counted for the user so far.
func (fx *usageFixture) counted(t *testing.T) xray.Traffic {
	t.Helper()
	rs, err := fx.f.running(fx.srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	traffic, err := rs.Client.UserTraffic(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return traffic[fx.u.ID]
}

// waitRecorded waits until the registry's counters for the user equal
// want, or, with want nil, what Xray counts (read again each time: Xray may
// count the last bytes of a transfer a moment after the client has them).
func (fx *usageFixture) waitRecorded(t *testing.T, want *xray.Traffic) {
	t.Helper()
	waitfor.Cond(t, 60*time.Second, func() error {
		got, err := bus.Request[user.User](context.Background(), fx.f.nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: fx.u.ID})
		if err != nil {
			return err
		}
		want := want
		if want == nil {
			c := fx.counted(t)
			want = &c
		}
		if got.Usage.UsedUp != want.Uplink || got.Usage.UsedDown != want.Downlink {
			return fmt.Errorf("registry has up %d down %d, xray counted up %d down %d",
				got.Usage.UsedUp, got.Usage.UsedDown, want.Uplink, want.Downlink)
		}
		return nil
	})
}

// TestUsageSurvivesANATSOutage pushes traffic through a server the agent
// deployed, cuts NATS mid-way (the agent keeps metering into its outbox),
// restores it, and finds the registry's counters equal to Xray's.
func TestUsageSurvivesANATSOutage(t *testing.T) {
	fx := newUsageFixture(t, 200*time.Millisecond)
	fx.push(t, 100_000)
	fx.f.ns.Shutdown()
	fx.push(t, 200_000)
	// Let at least one metering round happen while cut off.
	waitfor.Cond(t, 10*time.Second, func() error {
		if fx.f.currentAgent().Buffered() == 0 {
			return fmt.Errorf("no usage buffered while NATS is down")
		}
		return nil
	})
	fx.push(t, 300_000)
	fx.f.ns.Restart()
	fx.push(t, 50_000)
	// Xray counts the last bytes of a transfer a moment after the client
	// has them: wait until it has counted all it carried.
	waitfor.Cond(t, 10*time.Second, func() error {
		if c := fx.counted(t); c.Downlink < 650_000 {
			return fmt.Errorf("xray counted %d bytes down, want at least the 650,000 pulled", c.Downlink)
		}
		return nil
	})
	fx.waitRecorded(t, nil)
}

// TestUsageOfARemovedServerIsCounted meters only when an Xray leaves: with
// an interval longer than the test, the bytes reach the registry only
// through the reading the agent takes before it removes the server's Xray.
func TestUsageOfARemovedServerIsCounted(t *testing.T) {
	fx := newUsageFixture(t, time.Hour)
	fx.push(t, 123_456)
	// Let Xray finish counting the transfer before the server goes.
	want := fx.counted(t)
	waitfor.Cond(t, 10*time.Second, func() error {
		if next := fx.counted(t); next != want {
			want = next
			return fmt.Errorf("xray still counting")
		}
		return nil
	})
	fx.f.deleteServer(fx.srv.ID)
	fx.waitRecorded(t, &want)
}
