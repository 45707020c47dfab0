package wgserver_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard/wgtest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/wgconf"
)

// BenchmarkWireGuardThroughput moves the transfer BenchmarkSessionTrackingCost
// (package xray) moves through Xray — one 256 MB download over one TCP
// connection, as fast as loopback allows — through vpn-wireguard, in
// netstack mode and in tun mode (root and /dev/net/tun only). The client
// is wireguard-go on gVisor's netstack in the benchmark's process; the
// server is the vpn-wireguard process, whose CPU time comes from /proc.
//
//	cd services/runtime-agent && go test -run '^$' -bench WireGuardThroughput -benchtime 3x ./internal/wgserver
func BenchmarkWireGuardThroughput(b *testing.B) {
	const size = 256 << 20
	for _, mode := range []string{"netstack", "tun"} {
		b.Run(mode, func(b *testing.B) {
			var srv *wgtest.Server
			var base string
			addr := netip.MustParseAddr("10.8.0.2")
			if mode == "tun" {
				requireTUN(b)
				server := netip.MustParseAddr("10.77.0.1")
				srv = startTUN(b, server, netip.MustParsePrefix("10.77.0.0/24"))
				base = xraytest.StartHTTPTargetOn(b, netip.AddrPortFrom(server, 0).String())
				addr = netip.MustParseAddr("10.77.0.2")
			} else {
				srv = startNetstack(b)
				base = tunnelURL(xraytest.StartHTTPTarget(b), "")
			}
			u := addUser(b, srv, "bench", addr)
			var secs, cpu float64
			for range b.N {
				cpu0, err := procstat.CPUTime(srv.Cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				d := xraytest.StartDownload(b, u.client.Net.DialContext, base, fmt.Sprintf("/stream?n=%d&rate=0", size))
				<-d.Done()
				if err := d.Err(); err != nil {
					b.Fatalf("download: %v", err)
				}
				secs += time.Since(start).Seconds()
				cpu1, err := procstat.CPUTime(srv.Cmd.Process.Pid)
				if err != nil {
					b.Fatal(err)
				}
				cpu += (cpu1 - cpu0).Seconds()
			}
			gb := float64(b.N) * size / 1e9
			b.ReportMetric(gb*1e3/secs, "MB/s")
			b.ReportMetric(cpu/gb, "server-cpu-s/GB")
			b.ReportMetric(cpu/(gb*8), "server-cpu-s/Gbit")
		})
	}
}

// BenchmarkAddPeersLive is the time to add 10,000 peers (in batches of
// wireguard.BatchSize) to a running netstack server while a user's TCP
// session through it stays open; the session is checked after each round.
// Also reported: the server's resident memory then.
//
//	cd services/runtime-agent && go test -run '^$' -bench AddPeersLive -benchtime 3x ./internal/wgserver
func BenchmarkAddPeersLive(b *testing.B) {
	const n = 10_000
	peers := make([]wireguard.Peer, n)
	for i := range peers {
		k, err := wgconf.GeneratePrivateKey()
		if err != nil {
			b.Fatal(err)
		}
		ip := netip.AddrFrom4([4]byte{10, 8, byte(1 + i/250), byte(2 + i%250)})
		peers[i] = wireguard.Peer{PublicKey: k.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}}
	}
	echo := startEcho(b)
	var total time.Duration
	var rss uint64
	for range b.N {
		b.StopTimer()
		srv := startNetstack(b)
		u := addUser(b, srv, "session", netip.MustParseAddr("10.8.0.2"))
		conn, err := u.client.Net.DialContext(context.Background(), "tcp", net.JoinHostPort(hostAlias, fmt.Sprint(echo.Port)))
		if err != nil {
			b.Fatal(err)
		}
		r := bufio.NewReader(conn)
		b.StartTimer()
		start := time.Now()
		if err := srv.Client.AddPeers(context.Background(), peers); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		used, err := procstat.RSSBytes(srv.Cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		rss = max(rss, used)
		if _, err := fmt.Fprintln(conn, "still there"); err != nil {
			b.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != "still there\n" {
			b.Fatalf("session after adding %d peers: %q, %v", n, line, err)
		}
		conn.Close()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/10k-peers")
	b.ReportMetric(float64(rss)/(1<<20), "server-MiB-with-10k-peers")
}
