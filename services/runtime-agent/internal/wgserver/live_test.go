package wgserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/meter"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard/wgtest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
	"github.com/vpnfleet/vpnfleet/shared/wgconf"
)

// hostAlias is the server's own tunnel address, which the tests' servers
// dial to the host's loopback (a client's netstack, like a real system,
// never sends 127.0.0.1 into a tunnel).
const hostAlias = "10.8.0.1"

// startNetstack runs vpn-wireguard in netstack mode.
func startNetstack(t testing.TB) *wgtest.Server {
	return wgtest.Start(t, wgtest.Binary(t), "--mode", "netstack", "--host-alias", hostAlias)
}

type user struct {
	id     string
	key    wgconf.Key
	addr   netip.Addr
	conf   []byte
	client *wgtest.Client
}

// addUser adds a peer for a new user at addr and brings up the user's
// client from the `.conf` rendered for them.
func addUser(t testing.TB, srv *wgtest.Server, id string, addr netip.Addr) *user {
	t.Helper()
	priv, err := wgconf.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	psk, err := wgconf.GeneratePresharedKey()
	if err != nil {
		t.Fatal(err)
	}
	host := netip.PrefixFrom(addr, addr.BitLen())
	if err := srv.Client.AddPeers(context.Background(), []wireguard.Peer{{
		PublicKey: priv.PublicKey(), PresharedKey: psk, AllowedIPs: []netip.Prefix{host},
	}}); err != nil {
		t.Fatal(err)
	}
	conf, err := wgconf.Conf{
		Interface: wgconf.Interface{PrivateKey: priv, Addresses: []netip.Prefix{host}, MTU: 1420},
		Peers: []wgconf.Peer{{
			PublicKey: srv.PrivateKey.PublicKey(), PresharedKey: psk, Endpoint: srv.Endpoint(),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
		}},
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	return &user{id: id, key: priv.PublicKey(), addr: addr, conf: conf, client: wgtest.NewClient(t, conf)}
}

// tunnelURL is target's URL as seen from inside the tunnel.
func tunnelURL(target, path string) string {
	return strings.Replace(target, "127.0.0.1", hostAlias, 1) + path
}

// fetch gets n bytes from target (on the host's loopback) through u's
// tunnel, by the server's host alias.
func (u *user) fetch(target string, n int, timeout time.Duration) error {
	return u.fetchURL(tunnelURL(target, ""), n, timeout)
}

// fetchURL gets n bytes from the target at base through u's tunnel.
func (u *user) fetchURL(base string, n int, timeout time.Duration) error {
	resp, err := u.client.HTTP(timeout).Get(base + fmt.Sprintf("/bytes?n=%d", n))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if got != int64(n) {
		return fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return nil
}

// TestNetstackServesUsersAndCutsARemovedOne: two users pass traffic with
// real WireGuard clients built from their `.conf`; the server's per-peer
// counters equal what each client's device counted (WireGuard datagrams:
// payload plus 32 bytes a message, handshakes included); removing the
// first user's peer cuts them while the second goes on; and the usage
// meter, fed those readings and the removed peer's final counters, records
// every byte of both exactly once.
func TestNetstackServesUsersAndCutsARemovedOne(t *testing.T) {
	ctx := context.Background()
	srv := startNetstack(t)
	target := xraytest.StartHTTPTarget(t)
	a := addUser(t, srv, "user-a", netip.MustParseAddr("10.8.0.2"))
	b := addUser(t, srv, "user-b", netip.MustParseAddr("10.8.0.3"))

	const n = 300_000
	for _, u := range []*user{a, b} {
		if err := u.fetch(target, n, 20*time.Second); err != nil {
			t.Fatalf("%s through the tunnel: %v", u.id, err)
		}
	}
	// Usage: the server's counters, read as the meter reads them, equal
	// what each client sent and received once nothing is in flight.
	users := map[wgconf.Key]string{a.key: a.id, b.key: b.id}
	var usage map[string]wireguard.Traffic
	waitfor.Cond(t, 10*time.Second, func() error {
		var err error
		if usage, err = srv.Client.UserTraffic(ctx, users); err != nil {
			return err
		}
		for _, u := range []*user{a, b} {
			if got, want := usage[u.id], u.client.Traffic(t); got != want {
				return fmt.Errorf("%s: server counted %+v, client %+v", u.id, got, want)
			}
		}
		return nil
	})
	for _, u := range []*user{a, b} {
		if usage[u.id].Downlink < n || usage[u.id].Uplink == 0 {
			t.Fatalf("%s: counted %+v for %d bytes fetched", u.id, usage[u.id], n)
		}
		t.Logf("%s: fetched %d bytes; server counted up %d down %d (WireGuard datagrams)", u.id, n, usage[u.id].Uplink, usage[u.id].Downlink)
	}

	// A's long download is flowing when A is removed.
	stream, err := a.client.HTTP(0).Get(tunnelURL(target, "/stream?n=100000000&rate=2000000"))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	var lastRead atomic.Int64
	var streamed atomic.Int64
	go func() {
		buf := make([]byte, 32<<10)
		for {
			k, err := stream.Body.Read(buf)
			if k > 0 {
				streamed.Add(int64(k))
				lastRead.Store(time.Now().UnixNano())
			}
			if err != nil {
				return
			}
		}
	}()
	waitfor.Cond(t, 10*time.Second, func() error {
		if streamed.Load() < 200_000 {
			return fmt.Errorf("%d bytes streamed", streamed.Load())
		}
		return nil
	})
	// The usage meter reads the counters as it reads Xray's; a removed
	// peer's final counters join the reading taken at its removal.
	met := &usageSink{}
	m, err := meter.Open(t.TempDir(), "node-a", met, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	observe := func(traffic map[string]wireguard.Traffic) {
		t.Helper()
		c := map[string]meter.Counter{}
		for id, tr := range traffic {
			c[id] = meter.Counter{Up: tr.Uplink, Down: tr.Downlink}
		}
		if _, err := m.Observe([]meter.Reading{{Instance: "wg-1", Counters: c}}); err != nil {
			t.Fatal(err)
		}
	}
	observe(usage)
	before, err := srv.Client.UserTraffic(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	observe(before)
	start := time.Now()
	final, err := srv.Client.RemovePeers(ctx, []wgconf.Key{a.key})
	removed := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if f := final[a.key]; f.Downlink < before[a.id].Downlink || f.Uplink < before[a.id].Uplink {
		t.Fatalf("final counters of the removed peer %+v, below the last reading %+v", f, before[a.id])
	}
	atRemoval, err := srv.Client.UserTraffic(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	if _, still := atRemoval[a.id]; still {
		t.Fatal("the removed peer is still read")
	}
	atRemoval[a.id] = final[a.key]
	observe(atRemoval)
	// A's next request fails; B's succeeds.
	if err := a.fetch(target, 1000, 2*time.Second); err == nil {
		t.Fatal("the removed user's request went through")
	}
	if err := b.fetch(target, n, 20*time.Second); err != nil {
		t.Fatalf("the remaining user after the removal: %v", err)
	}
	d, err := srv.Client.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Peers) != 1 || d.Peers[0].PublicKey != b.key {
		t.Fatalf("device holds %d peers after the removal, want only user-b's", len(d.Peers))
	}
	last, err := srv.Client.UserTraffic(ctx, users)
	if err != nil {
		t.Fatal(err)
	}
	observe(last)
	// Every byte either peer moved is in the records, once.
	for id, want := range map[string]wireguard.Traffic{a.id: final[a.key], b.id: last[b.id]} {
		if got := met.total(t, id); got != want {
			t.Fatalf("%s: usage records sum to %+v, the device counted %+v", id, got, want)
		}
	}
	cut := time.Duration(lastRead.Load() - removed.UnixNano())
	t.Logf("removal took %v; the removed user's stream got its last byte %v after it returned (%d bytes streamed)",
		removed.Sub(start), cut, streamed.Load())
}

// TestThousandPeersAddedLiveKeepASession: an established TCP session
// through the tunnel works before and after 1,000 peers are added to the
// running server, and its peer did not have to handshake again.
func TestThousandPeersAddedLiveKeepASession(t *testing.T) {
	ctx := context.Background()
	srv := startNetstack(t)
	echo := startEcho(t)
	a := addUser(t, srv, "user-a", netip.MustParseAddr("10.8.0.2"))
	conn, err := a.client.Net.DialContext(ctx, "tcp", net.JoinHostPort(hostAlias, fmt.Sprint(echo.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	roundTrip := func(msg string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintln(conn, msg); err != nil {
			t.Fatalf("writing %q on the session: %v", msg, err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != msg+"\n" {
			t.Fatalf("echo of %q on the session: %q, %v", msg, line, err)
		}
	}
	roundTrip("before")
	d, err := srv.Client.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	handshake := d.Peers[0].LastHandshake

	peers := make([]wireguard.Peer, 1000)
	for i := range peers {
		k, err := wgconf.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		ip := netip.AddrFrom4([4]byte{10, 8, byte(1 + (i+3)/256), byte((i + 3) % 256)})
		peers[i] = wireguard.Peer{PublicKey: k.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}}
	}
	start := time.Now()
	if err := srv.Client.AddPeers(ctx, peers); err != nil {
		t.Fatal(err)
	}
	t.Logf("added 1,000 peers live in %v", time.Since(start))
	roundTrip("after")
	d, err = srv.Client.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Peers) != 1001 {
		t.Fatalf("device holds %d peers, want 1001", len(d.Peers))
	}
	for _, p := range d.Peers {
		if p.PublicKey == a.key && !p.LastHandshake.Equal(handshake) {
			t.Fatalf("the session's peer handshook again (%v, then %v)", handshake, p.LastHandshake)
		}
	}
}

// TestNetstackForwardsUDP: a UDP flow through the tunnel reaches a
// loopback service and its answers come back; a private destination is
// refused without --allow-private-networks.
func TestNetstackForwardsUDP(t *testing.T) {
	srv := startNetstack(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	a := addUser(t, srv, "user-a", netip.MustParseAddr("10.8.0.2"))
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	c, err := a.client.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(netip.MustParseAddr(hostAlias), port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// The first datagram may go before the handshake completes and be
	// dropped, as on any WireGuard link: send until one comes back.
	waitfor.Cond(t, 20*time.Second, func() error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if string(buf[:n]) != "ping" {
			return fmt.Errorf("echo %q", buf[:n])
		}
		return nil
	})
	// 192.168.0.1 is private: refused (dropped) by default.
	blocked, err := a.client.Net.DialContext(context.Background(), "tcp", "192.168.0.1:80")
	if err == nil {
		blocked.Close()
		t.Fatal("a private destination was dialed without --allow-private-networks")
	}
}

// TestConfigureRefusals: the device's own refusals come back classified:
// a listen port another socket holds is a Conflict, a missing key Invalid
// naming the field.
func TestConfigureRefusals(t *testing.T) {
	srv := startNetstack(t)
	taken, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	err = srv.Client.Configure(context.Background(), wireguard.Config{PrivateKey: srv.PrivateKey, ListenPort: taken.LocalAddr().(*net.UDPAddr).Port})
	if !errors.Is(err, errs.Conflict) {
		t.Fatalf("a taken port: got %v, want conflict", err)
	}
	err = srv.Client.Configure(context.Background(), wireguard.Config{})
	if f := errs.FieldsOf(err); !errors.Is(err, errs.Invalid) || len(f) != 1 || f[0].Field != "private_key" {
		t.Fatalf("no key: got %v", err)
	}
}

// TestBadPeerRefusedNamingTheField: a peer key that is no usable
// Curve25519 point is refused before anything reaches the device.
func TestBadPeerRefusedNamingTheField(t *testing.T) {
	srv := startNetstack(t)
	good, err := wgconf.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Client.AddPeers(context.Background(), []wireguard.Peer{{PublicKey: good.PublicKey()}, {PublicKey: wgconf.Key{}}})
	if !errors.Is(err, errs.Invalid) {
		t.Fatalf("got %v, want invalid", err)
	}
	if f := errs.FieldsOf(err); len(f) != 1 || f[0].Field != "peers[1].public_key" || f[0].Rule != wgconf.RuleKeyPoint {
		t.Fatalf("field errors %v", f)
	}
	d, err := srv.Client.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Peers) != 0 {
		t.Fatalf("%d peers added from a refused batch", len(d.Peers))
	}
}

// usageSink keeps the usage records the meter queues, in memory, as the
// agent's outbox would publish them.
type usageSink struct{ msgs []outbox.Msg }

func (s *usageSink) Add(m outbox.Msg) error {
	s.msgs = append(s.msgs, m)
	return nil
}

// total sums user's deltas over every record.
func (s *usageSink) total(t *testing.T, user string) wireguard.Traffic {
	var sum wireguard.Traffic
	for _, m := range s.msgs {
		var r usage.Record
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		for _, d := range r.Users {
			if d.User == user {
				sum.Uplink += d.Uplink
				sum.Downlink += d.Downlink
			}
		}
	}
	return sum
}

// startEcho serves a line echo on loopback until t ends.
func startEcho(t testing.TB) *net.TCPAddr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}
