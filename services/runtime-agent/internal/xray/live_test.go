package xray_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

const sni = "www.example.com"

// server is a real Xray started from a generated config, with a client for
// its API.
type server struct {
	spec   xray.Spec
	api    *xray.Client
	proc   *xraytest.Process
	pubKey string // REALITY public key of the vless inbound, if any
}

func newUUID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// testLogger logs into the test's log; benchmarks discard logs.
func testLogger(t testing.TB) *slog.Logger {
	if _, ok := t.(*testing.B); ok {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// inbounds returns one inbound of each protocol on free loopback ports, each
// with one seeded user, and the REALITY public key.
func inbounds(t testing.TB, dest string) ([]xray.Inbound, string) {
	t.Helper()
	kp, err := xray.NewX25519KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	sid, err := xray.NewShortID()
	if err != nil {
		t.Fatal(err)
	}
	ssKey := mustSSKey(t, xray.SS2022AES128GCM)
	port := func() int { return xraytest.FreePort(t) }
	return []xray.Inbound{
		{
			Tag: "vless", Protocol: xray.VLESSReality, Listen: "127.0.0.1", Port: port(),
			Reality: &xray.Reality{ServerNames: []string{sni}, Dest: dest, PrivateKey: kp.PrivateKey, ShortIDs: []string{sid, ""}},
			Users:   []xray.User{{ID: "seed-vless", UUID: newUUID(t)}},
		},
		{
			Tag: "ss", Protocol: xray.Shadowsocks2022, Listen: "127.0.0.1", Port: port(),
			Shadowsocks: &xray.Shadowsocks{Method: xray.SS2022AES128GCM, Key: ssKey},
			Users:       []xray.User{{ID: "seed-ss", Key: mustSSKey(t, xray.SS2022AES128GCM)}},
		},
		{
			Tag: "socks", Protocol: xray.SOCKS5, Listen: "127.0.0.1", Port: port(),
			Users: []xray.User{{ID: "seed-socks", Password: "seed-pass"}},
		},
		{
			Tag: "http", Protocol: xray.HTTP, Listen: "127.0.0.1", Port: port(),
			Users: []xray.User{{ID: "seed-http", Password: "seed-pass"}},
		},
	}, kp.PublicKey
}

func mustSSKey(t testing.TB, method string) string {
	t.Helper()
	k, err := xray.NewSS2022Key(method)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startServer generates a config for one inbound of each protocol, runs a
// real Xray with it and waits until its API and inbounds answer.
func startServer(t testing.TB, allowPrivate bool) *server {
	t.Helper()
	ins, pub := inbounds(t, xraytest.StartTLSDest(t, sni))
	s := runServer(t, xray.Spec{AllowPrivateNetworks: allowPrivate, Inbounds: ins})
	s.pubKey = pub
	return s
}

// runServer runs a real Xray for spec, with the API on a free loopback port,
// and waits until its API and inbounds answer.
func runServer(t testing.TB, spec xray.Spec) *server {
	t.Helper()
	return runServerWith(t, xraytest.Binary(t), spec)
}

// runServerWith is runServer with the Xray binary bin.
func runServerWith(t testing.TB, bin string, spec xray.Spec) *server {
	t.Helper()
	spec.APIListen = "127.0.0.1:" + strconv.Itoa(xraytest.FreePort(t))
	cfg, err := xray.BuildConfig(spec)
	if err != nil {
		t.Fatalf("BuildConfig: %v", err)
	}
	wait := []string{spec.APIListen}
	for _, in := range spec.Inbounds {
		wait = append(wait, net.JoinHostPort(in.Listen, strconv.Itoa(in.Port)))
	}
	proc := xraytest.Start(t, bin, cfg, wait...)
	api, err := xray.NewClient(spec.APIListen, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for err := api.Ping(ctx); err != nil; err = api.Ping(ctx) {
		select {
		case <-ctx.Done():
			t.Fatalf("xray api never answered: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return &server{spec: spec, api: api, proc: proc}
}

func (s *server) inbound(tag string) xray.Inbound {
	for _, in := range s.spec.Inbounds {
		if in.Tag == tag {
			return in
		}
	}
	panic("no inbound " + tag)
}

// outbound is the client side of a share link for user u on inbound in.
func (s *server) outbound(in xray.Inbound, u xray.User) xraytest.Outbound {
	host, port := in.Listen, in.Port
	switch in.Protocol {
	case xray.VLESSReality:
		return xraytest.VLESSReality{
			UUID: u.UUID, Host: host, Port: port, SNI: in.Reality.ServerNames[0],
			PublicKey: s.pubKey, ShortID: in.Reality.ShortIDs[0], Fingerprint: "chrome", Flow: xray.FlowVision,
		}
	case xray.Shadowsocks2022:
		return xraytest.Shadowsocks2022{Method: in.Shadowsocks.Method, Password: in.Shadowsocks.Key + ":" + u.Key, Host: host, Port: port}
	case xray.SOCKS5:
		return xraytest.SOCKS5{User: u.ID, Pass: u.Password, Host: host, Port: port}
	case xray.HTTP:
		return xraytest.HTTPProxy{User: u.ID, Pass: u.Password, Host: host, Port: port}
	}
	panic("unknown protocol")
}

func newUser(t testing.TB, in xray.Inbound) xray.User {
	u := xray.User{ID: newUUID(t)}
	switch in.Protocol {
	case xray.VLESSReality:
		u.UUID = newUUID(t)
	case xray.Shadowsocks2022:
		u.Key = mustSSKey(t, in.Shadowsocks.Method)
	default:
		u.Password = "pw-" + newUUID(t)
	}
	return u
}

// fetch gets url through c within a bounded time.
func fetch(c *xraytest.Client, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Get(ctx, url)
}

// fetchFails checks that fetching url through c fails. Some servers reject
// at once; a Shadowsocks-2022 server, resisting probes, just stalls, so the
// attempt is bounded more tightly than a fetch that should work.
func fetchFails(t *testing.T, c *xraytest.Client, url, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if body, err := c.Get(ctx, url); err == nil {
		t.Fatalf("%s got through: %q", what, body)
	}
}

// waitTraffic polls the user's counters until ok accepts them.
func waitTraffic(t *testing.T, api *xray.Client, id string, ok func(xray.Traffic) bool) xray.Traffic {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last xray.Traffic
	for {
		all, err := api.UserTraffic(ctx)
		if err == nil {
			last = all[id]
			if ok(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("traffic of %s never matched, last %+v (err %v)", id, last, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestLiveUsers(t *testing.T) {
	s := startServer(t, true)
	bin := xraytest.Binary(t)
	target := xraytest.StartHTTPTarget(t)
	ctx := context.Background()

	for _, tag := range []string{"vless", "ss", "socks", "http"} {
		t.Run(tag, func(t *testing.T) {
			in := s.inbound(tag)
			seed := in.Users[0]
			u := newUser(t, in)

			// The seeded user from the config works, the new one not yet.
			seedClient := xraytest.StartClient(t, bin, s.outbound(in, seed))
			if body, err := fetch(seedClient, target); err != nil || string(body) != xraytest.TargetBody {
				t.Fatalf("seeded user: body %q, err %v", body, err)
			}
			client := xraytest.StartClient(t, bin, s.outbound(in, u))
			fetchFails(t, client, target, "a user not yet added")

			// Add, twice: the second add is a no-op.
			for range 2 {
				if err := s.api.AddUser(ctx, in, u); err != nil {
					t.Fatalf("AddUser: %v", err)
				}
			}
			ids, err := s.api.InboundUsers(ctx, in)
			if err != nil {
				t.Fatalf("InboundUsers: %v", err)
			}
			if want := sorted(seed.ID, u.ID); !slices.Equal(ids, want) {
				t.Fatalf("InboundUsers = %v, want %v", ids, want)
			}
			body, err := fetch(client, target)
			if err != nil || string(body) != xraytest.TargetBody {
				t.Fatalf("added user: body %q, err %v", body, err)
			}

			// Counters count the bytes and keep growing: reads do not reset.
			const n = 256 << 10
			if body, err := fetch(client, target+"/bytes?n="+strconv.Itoa(n)); err != nil || len(body) != n {
				t.Fatalf("fetching %d bytes: got %d, err %v", n, len(body), err)
			}
			first := waitTraffic(t, s.api, u.ID, func(tr xray.Traffic) bool { return tr.Downlink >= n && tr.Uplink > 0 })
			if _, err := fetch(client, target+"/bytes?n="+strconv.Itoa(n)); err != nil {
				t.Fatalf("fetching again: %v", err)
			}
			waitTraffic(t, s.api, u.ID, func(tr xray.Traffic) bool {
				return tr.Downlink >= first.Downlink+n && tr.Uplink > first.Uplink
			})

			// Remove, twice; new connections fail, the seeded user is unharmed.
			for range 2 {
				if err := s.api.RemoveUser(ctx, in, u.ID); err != nil {
					t.Fatalf("RemoveUser: %v", err)
				}
			}
			if ids, err := s.api.InboundUsers(ctx, in); err != nil || !slices.Equal(ids, []string{seed.ID}) {
				t.Fatalf("InboundUsers after remove = %v, %v; want [%s]", ids, err, seed.ID)
			}
			fetchFails(t, client, target, "a removed user")
			if _, err := fetch(seedClient, target); err != nil {
				t.Fatalf("seeded user after another's removal: %v", err)
			}
			// Xray keeps a removed user's counters.
			if all, err := s.api.UserTraffic(ctx); err != nil || all[u.ID].Downlink < first.Downlink {
				t.Fatalf("counters after removal: %+v, %v", all[u.ID], err)
			}

			// Adding back works again.
			if err := s.api.AddUser(ctx, in, u); err != nil {
				t.Fatalf("re-adding: %v", err)
			}
			if _, err := fetch(client, target); err != nil {
				t.Fatalf("re-added user: %v", err)
			}
		})
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

// TestRealityForwardsStrangers proves the dest helper does its job: a plain
// TLS client that REALITY does not authenticate is served by the dest.
func TestRealityForwardsStrangers(t *testing.T) {
	s := startServer(t, true)
	in := s.inbound("vless")
	addr := net.JoinHostPort(in.Listen, strconv.Itoa(in.Port))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("tls to the reality port: %v", err)
	}
	defer conn.Close()
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Fatalf("tls version %x, want 1.3", v)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(conn)
	if !strings.Contains(buf.String(), "dest HTTP/1.1") {
		t.Fatalf("reality did not forward to the dest: %q", buf.String())
	}
}

// TestPrivateNetworksBlocked: by default users cannot reach the host's own
// network through the server.
func TestPrivateNetworksBlocked(t *testing.T) {
	s := startServer(t, false)
	in := s.inbound("socks")
	client := xraytest.StartClient(t, xraytest.Binary(t), s.outbound(in, in.Users[0]))
	fetchFails(t, client, xraytest.StartHTTPTarget(t), "a request to a loopback target")
}

func TestClientErrors(t *testing.T) {
	s := startServer(t, true)
	ctx := context.Background()
	vless, ss, socks := s.inbound("vless"), s.inbound("ss"), s.inbound("socks")
	missing := vless
	missing.Tag = "nope"
	wrongKind := socks
	wrongKind.Tag = "http"

	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"add to a missing inbound", func() error { return s.api.AddUser(ctx, missing, newUser(t, vless)) }, errs.NotFound},
		{"remove from a missing inbound", func() error { return s.api.RemoveUser(ctx, missing, "someone") }, errs.NotFound},
		{"ss key of the wrong length", func() error {
			u := newUser(t, ss)
			u.Key = mustSSKey(t, xray.SS2022AES256GCM)
			return s.api.AddUser(ctx, ss, u)
		}, errs.Invalid},
		{"vless user without uuid", func() error { return s.api.AddUser(ctx, vless, xray.User{ID: "x"}) }, errs.Invalid},
		{"socks user on an http inbound", func() error { return s.api.AddUser(ctx, wrongKind, newUser(t, socks)) }, errs.Conflict},
		{"vless user on a socks inbound", func() error {
			in := vless
			in.Tag = "socks"
			return s.api.AddUser(ctx, in, newUser(t, vless))
		}, errs.Conflict},
		{"ss inbound without its method", func() error {
			in := ss
			in.Shadowsocks = nil
			return s.api.AddUser(ctx, in, newUser(t, ss))
		}, errs.Invalid},
		{"reserved id", func() error { return s.api.RemoveUser(ctx, socks, "vpnfleet-placeholder") }, errs.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want class %v", err, tt.want)
			}
		})
	}

	// An API that is not there is Unavailable.
	dead, err := xray.NewClient("127.0.0.1:"+strconv.Itoa(xraytest.FreePort(t)), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := dead.Ping(cctx); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("Ping of a dead api = %v, want unavailable", err)
	}
}

// TestAddUsersBatch covers the batch paths, which replace the inbound: users
// added earlier through the API survive, batch users connect, and repeating
// the batch changes nothing.
func TestAddUsersBatch(t *testing.T) {
	s := startServer(t, true)
	bin := xraytest.Binary(t)
	target := xraytest.StartHTTPTarget(t)
	ctx := context.Background()
	for _, tag := range []string{"ss", "socks", "http", "vless"} {
		t.Run(tag, func(t *testing.T) {
			in := s.inbound(tag)
			early := newUser(t, in)
			if err := s.api.AddUser(ctx, in, early); err != nil {
				t.Fatalf("AddUser: %v", err)
			}
			batch := []xray.User{early} // already there: skipped
			for range 40 {
				batch = append(batch, newUser(t, in))
			}
			for range 2 {
				if err := s.api.AddUsers(ctx, in, batch); err != nil {
					t.Fatalf("AddUsers: %v", err)
				}
			}
			want := []string{in.Users[0].ID}
			for _, u := range batch {
				want = append(want, u.ID)
			}
			slices.Sort(want)
			if ids, err := s.api.InboundUsers(ctx, in); err != nil || !slices.Equal(ids, want) {
				t.Fatalf("InboundUsers = %v, %v; want %v", ids, err, want)
			}
			for _, u := range []xray.User{early, batch[len(batch)-1], in.Users[0]} {
				c := xraytest.StartClient(t, bin, s.outbound(in, u))
				if body, err := fetch(c, target); err != nil || string(body) != xraytest.TargetBody {
					t.Fatalf("user %s after the batch: %q, %v", u.ID, body, err)
				}
			}
			// Users still change one by one after a replacement.
			if err := s.api.RemoveUser(ctx, in, early.ID); err != nil {
				t.Fatalf("RemoveUser: %v", err)
			}
			fetchFails(t, xraytest.StartClient(t, bin, s.outbound(in, early)), target, "a removed user")

			// Removing many at once: one replacement (SS2022, SOCKS5,
			// HTTP); the others stay and still connect.
			gone := batch[1:36]
			for range 2 {
				if err := s.api.RemoveUsers(ctx, in, ids(gone)); err != nil {
					t.Fatalf("RemoveUsers: %v", err)
				}
			}
			left := []string{in.Users[0].ID}
			left = append(left, ids(batch[36:])...)
			slices.Sort(left)
			if got, err := s.api.InboundUsers(ctx, in); err != nil || !slices.Equal(got, left) {
				t.Fatalf("InboundUsers after RemoveUsers = %v, %v; want %v", got, err, left)
			}
			fetchFails(t, xraytest.StartClient(t, bin, s.outbound(in, gone[0])), target, "a user removed in a batch")
			c := xraytest.StartClient(t, bin, s.outbound(in, batch[len(batch)-1]))
			if body, err := fetch(c, target); err != nil || string(body) != xraytest.TargetBody {
				t.Fatalf("kept user after RemoveUsers: %q, %v", body, err)
			}
		})
	}
}

func ids(users []xray.User) []string {
	out := make([]string, len(users))
	for i, u := range users {
		out[i] = u.ID
	}
	return out
}

// TestConcurrentAddsSurviveReplacement: single adds racing with a batch that
// replaces the inbound are all kept.
func TestConcurrentAddsSurviveReplacement(t *testing.T) {
	s := startServer(t, true)
	ctx := context.Background()
	in := s.inbound("ss")
	var singles, batch []xray.User
	for range 20 {
		singles = append(singles, newUser(t, in))
	}
	for range 3 * 32 {
		batch = append(batch, newUser(t, in))
	}
	errc := make(chan error, len(batch)/32+len(singles))
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; i < len(batch); i += 32 {
			errc <- s.api.AddUsers(ctx, in, batch[i:i+32])
		}
	})
	for _, u := range singles {
		wg.Go(func() { errc <- s.api.AddUser(ctx, in, u) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{in.Users[0].ID}
	for _, u := range slices.Concat(singles, batch) {
		want = append(want, u.ID)
	}
	slices.Sort(want)
	if ids, err := s.api.InboundUsers(ctx, in); err != nil || !slices.Equal(ids, want) {
		t.Fatalf("InboundUsers: %d users, %v; want %d", len(ids), err, len(want))
	}
}

// TestRepliesLargerThanTheLimit fills every inbound of a real Xray with
// more users than one reply at the client's first receive limit can carry
// (8 KiB here, gRPC's default 4 MiB in production, which 75,000 VLESS
// users exceed) and lists them exactly; a reply over MaxRecv, and an
// inbound replacement over what Xray's API accepts, fail with
// errs.CodeMessageTooLarge and leave Xray as it was.
func TestRepliesLargerThanTheLimit(t *testing.T) {
	s := startServer(t, true)
	ctx := context.Background()
	small, err := xray.NewClient(s.spec.APIListen, testLogger(t), xray.Limits{Recv: 8 << 10, MaxRecv: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = small.Close() })
	const n = 1000 // about 100 KB of users per inbound
	for _, tag := range []string{"vless", "ss", "socks", "http"} {
		t.Run(tag, func(t *testing.T) {
			in := s.inbound(tag)
			users := make([]xray.User, n)
			for i := range users {
				users[i] = newUser(t, in)
			}
			if err := small.AddUsers(ctx, in, users); err != nil {
				t.Fatalf("AddUsers: %v", err)
			}
			want := append(ids(users), in.Users[0].ID)
			slices.Sort(want)
			got, err := small.InboundUsers(ctx, in)
			if err != nil {
				t.Fatalf("InboundUsers: %v", err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("InboundUsers: %d users, want exactly the %d added", len(got), len(want))
			}
		})
	}
	if _, err := small.UserTraffic(ctx); err != nil {
		t.Fatalf("UserTraffic: %v", err)
	}

	tight, err := xray.NewClient(s.spec.APIListen, testLogger(t), xray.Limits{Recv: 4 << 10, MaxRecv: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tight.Close() })
	_, err = tight.InboundUsers(ctx, s.inbound("vless"))
	if errs.CodeOf(err) != errs.CodeMessageTooLarge || !errors.Is(err, errs.Invalid) {
		t.Fatalf("InboundUsers over MaxRecv: %v, want Invalid with code %s", err, errs.CodeMessageTooLarge)
	}

	// 60,000 SOCKS5 accounts make an inbound of about 5 MB: Xray's API
	// would refuse it, so the client refuses before removing the inbound.
	in := s.inbound("socks")
	many := make([]xray.User, 60_000)
	for i := range many {
		many[i] = xray.User{ID: newUUID(t), Password: "pw-" + strconv.Itoa(i) + "-0123456789abcdefghij"}
	}
	err = s.api.AddUsers(ctx, in, many)
	if errs.CodeOf(err) != errs.CodeMessageTooLarge {
		t.Fatalf("AddUsers of 60,000 SOCKS5 accounts: %v, want code %s", err, errs.CodeMessageTooLarge)
	}
	if got, err := s.api.InboundUsers(ctx, in); err != nil || len(got) != n+1 {
		t.Fatalf("after the refused replacement: %d users, %v; want %d", len(got), err, n+1)
	}
}
