package xray_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"golang.org/x/net/proxy"
)

// benchInbound returns an inbound of protocol p on a free loopback port.
func benchInbound(b *testing.B, p xray.Protocol) xray.Inbound {
	ins, _ := inbounds(b, "www.example.com:443")
	for _, in := range ins {
		if in.Protocol == p {
			in.Users = nil
			return in
		}
	}
	b.Fatalf("no inbound for %s", p)
	return xray.Inbound{}
}

func benchUsers(b *testing.B, in xray.Inbound, n int) []xray.User {
	users := make([]xray.User, n)
	for i := range users {
		users[i] = newUser(b, in)
	}
	return users
}

// BenchmarkAddUser measures one AddUser through the API of a real Xray
// whose inbound grows by one user per operation.
func BenchmarkAddUser(b *testing.B) {
	for _, p := range []xray.Protocol{xray.VLESSReality, xray.Shadowsocks2022, xray.SOCKS5} {
		b.Run(string(p), func(b *testing.B) {
			in := benchInbound(b, p)
			s := runServer(b, xray.Spec{AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}})
			ctx := context.Background()
			var lat []time.Duration
			for b.Loop() {
				b.StopTimer()
				u := newUser(b, in)
				b.StartTimer()
				start := time.Now()
				if err := s.api.AddUser(ctx, in, u); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkApply10kUsers measures applying 10,000 users to one inbound of a
// freshly started Xray: one AddUser after another, with 16 concurrent
// callers, and one AddUsers call (which replaces a Shadowsocks-2022 or
// SOCKS5 inbound once).
func BenchmarkApply10kUsers(b *testing.B) {
	const n = 10_000
	cases := []struct {
		name        string
		proto       xray.Protocol
		concurrency int
		batch       bool
	}{
		{"vless/sequential", xray.VLESSReality, 1, false},
		{"vless/concurrent16", xray.VLESSReality, 16, false},
		{"shadowsocks-2022/sequential", xray.Shadowsocks2022, 1, false},
		{"shadowsocks-2022/concurrent16", xray.Shadowsocks2022, 16, false},
		{"shadowsocks-2022/batch", xray.Shadowsocks2022, 1, true},
		{"socks5/batch", xray.SOCKS5, 1, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				in := benchInbound(b, c.proto)
				s := runServer(b, xray.Spec{AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}})
				users := benchUsers(b, in, n)
				b.StartTimer()
				if c.batch {
					if err := s.api.AddUsers(ctx, in, users); err != nil {
						b.Fatal(err)
					}
				} else {
					applyConcurrently(b, c.concurrency, users, func(u xray.User) error { return s.api.AddUser(ctx, in, u) })
				}
				b.StopTimer()
				ids, err := s.api.InboundUsers(ctx, in)
				if err != nil || len(ids) != n {
					b.Fatalf("InboundUsers: %d users, %v", len(ids), err)
				}
				s.proc.Kill()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/user")
		})
	}
}

func applyConcurrently(b *testing.B, workers int, users []xray.User, add func(xray.User) error) {
	work := make(chan xray.User)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for u := range work {
				if err := add(u); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for _, u := range users {
		work <- u
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkUserTraffic measures one UserTraffic read (QueryStats, no reset)
// when n users have counters. Counters appear on a user's first connection,
// so the setup opens one SOCKS5 connection per user.
func BenchmarkUserTraffic(b *testing.B) {
	for _, n := range []int{100, 1000, 10_000} {
		b.Run("users="+strconv.Itoa(n), func(b *testing.B) {
			in := benchInbound(b, xray.SOCKS5)
			in.Users = benchUsers(b, in, n)
			s := runServer(b, xray.Spec{AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}})
			touchEveryUser(b, in)
			ctx := context.Background()
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				all, err := s.api.UserTraffic(ctx)
				lat = append(lat, time.Since(start))
				if err != nil || len(all) != n {
					b.Fatalf("UserTraffic: %d users, %v", len(all), err)
				}
			}
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkInboundUsers measures listing the users of an inbound that
// holds n of them, the read the drift check makes.
func BenchmarkInboundUsers(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		b.Run("vless/users="+strconv.Itoa(n), func(b *testing.B) {
			in := benchInbound(b, xray.VLESSReality)
			in.Users = benchUsers(b, in, n)
			s := runServer(b, xray.Spec{AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}})
			ctx := context.Background()
			for b.Loop() {
				ids, err := s.api.InboundUsers(ctx, in)
				if err != nil || len(ids) != n {
					b.Fatalf("InboundUsers: %d, %v", len(ids), err)
				}
			}
		})
	}
}

// touchEveryUser opens one SOCKS5 connection per user of a SOCKS5 inbound
// to a local listener, so that Xray registers every user's counters.
func touchEveryUser(b *testing.B, in xray.Inbound) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var acceptWG sync.WaitGroup
	acceptWG.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	})
	defer func() {
		_ = l.Close()
		acceptWG.Wait()
	}()
	addr := net.JoinHostPort(in.Listen, strconv.Itoa(in.Port))
	work := make(chan xray.User)
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for u := range work {
				d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: u.ID, Password: u.Password}, proxy.Direct)
				if err == nil {
					var c net.Conn
					if c, err = d.Dial("tcp", l.Addr().String()); err == nil {
						_ = c.Close()
					}
				}
				if err != nil {
					errc <- fmt.Errorf("connecting as %s: %w", u.ID, err)
					return
				}
			}
		})
	}
	for _, u := range in.Users {
		work <- u
	}
	close(work)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
