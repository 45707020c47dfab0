// Package wgtest runs real WireGuard for tests: the vpn-wireguard server as
// a process (the binary built from this module, or VPN_WIREGUARD_BIN) and
// in-process clients made with wireguard-go and its netstack, which need
// no privilege, configured from a user's `.conf` as a WireGuard app is.
package wgtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
	"github.com/vpnfleet/vpnfleet/shared/wgconf"
)

// Package is the import path of the server's main package.
const Package = "github.com/vpnfleet/vpnfleet/services/runtime-agent/cmd/vpn-wireguard"

var built struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the vpn-wireguard binary: VPN_WIREGUARD_BIN when set,
// otherwise one `go build` of this module's source per test process (the
// build cache makes the next ones quick), so a test never runs a stale
// binary.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VPN_WIREGUARD_BIN"); p != "" {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("VPN_WIREGUARD_BIN=%s: not an executable file (%v)", p, err)
		}
		return p
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "vpn-wireguard-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "vpn-wireguard")
		cmd := exec.Command("go", "build", "-trimpath", "-o", built.path, Package)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build %s: %v\n%s", Package, err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

// Server is a running vpn-wireguard process, configured with a fresh
// private key on a free loopback port.
type Server struct {
	Client     *wireguard.Client
	PrivateKey wgconf.Key
	Port       int
	Cmd        *exec.Cmd
	// LogPath holds the process's output.
	LogPath string
}

// Output is what the process wrote so far.
func (s *Server) Output() string {
	b, _ := os.ReadFile(s.LogPath)
	return string(b)
}

// Endpoint is where clients reach the server.
func (s *Server) Endpoint() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Start runs bin with args (plus its UAPI socket), waits for the socket
// and configures the device; the process is stopped when t ends.
func Start(t testing.TB, bin string, args ...string) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "wg") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "uapi.sock")
	s := &Server{Client: wireguard.New(socket), LogPath: filepath.Join(dir, "output")}
	out, err := os.Create(s.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.Cmd = exec.Command(bin, append([]string{"--uapi-socket", socket}, args...)...)
	s.Cmd.Stdout, s.Cmd.Stderr = out, out
	if err := s.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.Cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = s.Cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("vpn-wireguard output:\n%s", s.Output())
		}
	})
	ctx := context.Background()
	waitfor.Cond(t, 30*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("vpn-wireguard exited: %s", s.Output())
		default:
		}
		_, err := s.Client.Get(ctx)
		return err
	})
	if s.PrivateKey, err = wgconf.GeneratePrivateKey(); err != nil {
		t.Fatal(err)
	}
	if err := s.Client.Configure(ctx, wireguard.Config{PrivateKey: s.PrivateKey}); err != nil {
		t.Fatal(err)
	}
	d, err := s.Client.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.PublicKey != s.PrivateKey.PublicKey() || d.ListenPort == 0 {
		t.Fatalf("device reads back key %s port %d after configuring", d.PublicKey, d.ListenPort)
	}
	s.Port = d.ListenPort
	return s
}

// Client is an in-process WireGuard client: wireguard-go on gVisor's
// netstack, configured from a `.conf`.
type Client struct {
	Net *netstack.Net
	Dev *device.Device
}

// NewClient brings up a client from conf, a `.conf` as delivered to the
// user (parsed as the app parses it); it is closed when t ends.
func NewClient(t testing.TB, conf []byte) *Client {
	t.Helper()
	c, err := wgconf.Parse(conf)
	if err != nil {
		t.Fatalf("parsing the user's .conf: %v\n%s", err, conf)
	}
	var addrs []netip.Addr
	for _, p := range c.Interface.Addresses {
		addrs = append(addrs, p.Addr())
	}
	mtu := c.Interface.MTU
	if mtu == 0 {
		mtu = 1420
	}
	tdev, tnet, err := netstack.CreateNetTUN(addrs, c.Interface.DNS, mtu)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	t.Cleanup(dev.Close)
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\n", c.Interface.PrivateKey.Hex())
	for _, p := range c.Peers {
		ep, err := net.ResolveUDPAddr("udp", p.Endpoint)
		if err != nil {
			t.Fatalf("resolving the .conf's endpoint: %v", err)
		}
		fmt.Fprintf(&b, "public_key=%s\npreshared_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\n",
			p.PublicKey.Hex(), p.PresharedKey.Hex(), netip.AddrPortFrom(ep.AddrPort().Addr().Unmap(), ep.AddrPort().Port()), p.PersistentKeepalive)
		for _, a := range p.AllowedIPs {
			fmt.Fprintf(&b, "allowed_ip=%s\n", a)
		}
	}
	if err := dev.IpcSet(b.String()); err != nil {
		t.Fatalf("configuring the client: %v", err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	return &Client{Net: tnet, Dev: dev}
}

// HTTP is an HTTP client whose connections go through the tunnel; each
// request opens a new connection.
func (c *Client) HTTP(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:       c.Net.DialContext,
		DisableKeepAlives: true,
	}}
}

// Traffic is what the client's device counted for its (only) peer, the
// server, from the user's side: Uplink is what it sent, Downlink what it
// received — what the server counts for the user when no datagram is lost.
func (c *Client) Traffic(t testing.TB) wireguard.Traffic {
	t.Helper()
	text, err := c.Dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	d, err := wireguard.ParseGet(strings.NewReader(text + "errno=0\n"))
	if err != nil || len(d.Peers) != 1 {
		t.Fatalf("client device: %v, %d peers", err, len(d.Peers))
	}
	// The client's sent bytes are the server's received ones: swap.
	return wireguard.Traffic{Uplink: d.Peers[0].Traffic.Downlink, Downlink: d.Peers[0].Traffic.Uplink}
}
