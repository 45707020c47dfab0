package wgserver_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard/wgtest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
	"github.com/vpnfleet/vpnfleet/shared/wgconf"
)

// requireTUN skips a test that needs root and /dev/net/tun where the
// machine has neither, with a message, and fails it instead when
// REQUIRE_TUN=1 (as CI, which runs as root, may set).
func requireTUN(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/dev/net/tun")
	if os.Geteuid() == 0 && err == nil {
		return
	}
	msg := fmt.Sprintf("tun mode needs root and /dev/net/tun (euid %d, %v)", os.Geteuid(), err)
	if os.Getenv("REQUIRE_TUN") == "1" {
		t.Fatal(msg + "; REQUIRE_TUN=1")
	}
	t.Skip(msg)
}

// startTUN runs vpn-wireguard in tun mode on its own interface holding
// server (the pool's first address) in pool.
func startTUN(t testing.TB, server netip.Addr, pool netip.Prefix) *wgtest.Server {
	name := fmt.Sprintf("vpnwg%d", os.Getpid()%100000)
	return wgtest.Start(t, wgtest.Binary(t), "--mode", "tun", "--interface", name,
		"--address", netip.PrefixFrom(server, pool.Bits()).String())
}

// TestTUNModeServesAUser: in tun mode the kernel gets the user's packets
// from the TUN interface and delivers them to a service listening on the
// interface's address; the counters agree with the client's as in
// netstack mode.
func TestTUNModeServesAUser(t *testing.T) {
	requireTUN(t)
	server, pool := netip.MustParseAddr("10.77.0.1"), netip.MustParsePrefix("10.77.0.0/24")
	srv := startTUN(t, server, pool)
	target := xraytest.StartHTTPTargetOn(t, netip.AddrPortFrom(server, 0).String())
	u := addUser(t, srv, "user-a", netip.MustParseAddr("10.77.0.2"))
	const n = 1_000_000
	if err := u.fetchURL(target, n, 20*time.Second); err != nil {
		t.Fatalf("through the tun device: %v", err)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		usage, err := srv.Client.UserTraffic(context.Background(), map[wgconf.Key]string{u.key: u.id})
		if err != nil {
			return err
		}
		if got, want := usage[u.id], u.client.Traffic(t); got != want || got.Downlink < n {
			return fmt.Errorf("server counted %+v, client %+v", got, want)
		}
		return nil
	})
	if _, err := srv.Client.RemovePeers(context.Background(), []wireguard.Key{u.key}); err != nil {
		t.Fatal(err)
	}
	if err := u.fetchURL(target, 1000, 2*time.Second); err == nil {
		t.Fatal("the removed user's request went through")
	}
}
