package xray_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
)

// binaries are the two Xray builds compared: the product's vpn-xray (with
// the session extension) and the stock Xray-core of the same version.
func binaries(b *testing.B) []struct{ name, path string } {
	return []struct{ name, path string }{
		{"vpn-xray", xraytest.Binary(b)},
		{"stock", xraytest.StockBinary(b)},
	}
}

// directDialer is a client of user u on inbound in of s with as little in
// between as there can be: SOCKS5, HTTP and Shadowsocks-2022 clients in
// this process; for VLESS+REALITY, a stock Xray client process (the same
// for both servers compared).
func directDialer(b *testing.B, s *server, in xray.Inbound, u xray.User) xraytest.DialFunc {
	addr := net.JoinHostPort(in.Listen, strconv.Itoa(in.Port))
	switch in.Protocol {
	case xray.SOCKS5:
		d, err := xraytest.SOCKS5Dialer(u.ID, u.Password, addr)
		if err != nil {
			b.Fatal(err)
		}
		return d
	case xray.HTTP:
		return xraytest.HTTPConnectDialer(u.ID, u.Password, addr)
	case xray.Shadowsocks2022:
		d, err := xraytest.SS2022Dialer(in.Shadowsocks.Method, in.Shadowsocks.Key+":"+u.Key, addr)
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	return xraytest.StartClient(b, xraytest.StockBinary(b), s.outbound(in, u)).DialContext
}

// BenchmarkSessionTrackingCost compares vpn-xray with the stock Xray on the
// same transfer, per protocol: one 256 MB download over one connection as
// fast as it goes on loopback; reported are the throughput and the
// server's CPU time per GB (the server shares two cores with the client
// and the target, so CPU per GB is the steadier figure). vpn-xray copies
// in user space where the stock build splices SOCKS5 and HTTP in the
// kernel: that, and counting while the bytes flow, is the cost measured.
//
//	make bench BENCH=BenchmarkSessionTrackingCost
func BenchmarkSessionTrackingCost(b *testing.B) {
	const size = 256 << 20
	target := xraytest.StartHTTPTarget(b)
	// Per protocol, one build right after the other, so both see the same
	// machine.
	for _, tag := range []string{"vless", "ss", "socks", "http"} {
		for _, bin := range binaries(b) {
			b.Run(tag+"/"+bin.name, func(b *testing.B) {
				ins, pub := inbounds(b, xraytest.StartTLSDest(b, sni))
				s := runServerWith(b, bin.path, xray.Spec{AllowPrivateNetworks: true, Inbounds: ins})
				s.pubKey = pub
				in := s.inbound(tag)
				u := newUser(b, in)
				if err := s.api.AddUser(context.Background(), in, u); err != nil {
					b.Fatal(err)
				}
				dial := directDialer(b, s, in, u)
				var secs, cpu float64
				for range b.N {
					cpu0, err := procstat.CPUTime(s.proc.PID())
					if err != nil {
						b.Fatal(err)
					}
					start := time.Now()
					d := xraytest.StartDownload(b, dial, target, fmt.Sprintf("/stream?n=%d&rate=0", size))
					<-d.Done()
					if err := d.Err(); err != nil {
						b.Fatalf("download: %v", err)
					}
					secs += time.Since(start).Seconds()
					cpu1, err := procstat.CPUTime(s.proc.PID())
					if err != nil {
						b.Fatal(err)
					}
					cpu += (cpu1 - cpu0).Seconds()
				}
				gb := float64(b.N) * size / 1e9
				b.ReportMetric(gb*1e3/secs, "MB/s")
				b.ReportMetric(cpu/gb, "server-cpu-s/GB")
			})
		}
	}
}

// BenchmarkSessionMemory compares the memory each open connection costs in
// vpn-xray and in the stock Xray: 1,000 idle SOCKS5 connections to the
// target, server RSS before and after.
//
//	make bench BENCH=BenchmarkSessionMemory
func BenchmarkSessionMemory(b *testing.B) {
	const conns = 1000
	target := xraytest.StartHTTPTarget(b)
	host := target[len("http://"):]
	for _, bin := range binaries(b) {
		b.Run(bin.name, func(b *testing.B) {
			for range b.N {
				ins, _ := inbounds(b, xraytest.StartTLSDest(b, sni))
				s := runServerWith(b, bin.path, xray.Spec{AllowPrivateNetworks: true, Inbounds: ins})
				in := s.inbound("socks")
				u := newUser(b, in)
				if err := s.api.AddUser(context.Background(), in, u); err != nil {
					b.Fatal(err)
				}
				dial := directDialer(b, s, in, u)
				// Warm up: the first connection allocates what every later
				// one shares.
				warm, err := dial(context.Background(), "tcp", host)
				if err != nil {
					b.Fatal(err)
				}
				defer warm.Close()
				before, err := procstat.RSSBytes(s.proc.PID())
				if err != nil {
					b.Fatal(err)
				}
				var open []net.Conn
				for range conns {
					c, err := dial(context.Background(), "tcp", host)
					if err != nil {
						b.Fatal(err)
					}
					open = append(open, c)
				}
				after, err := procstat.RSSBytes(s.proc.PID())
				if err != nil {
					b.Fatal(err)
				}
				for _, c := range open {
					c.Close()
				}
				b.ReportMetric(float64(after-before)/conns/1024, "KiB/conn")
			}
		})
	}
}
