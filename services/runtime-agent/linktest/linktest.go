// Package linktest proves, in tests of any module, that a user's share link
// works: it starts the pinned Xray (internal/xray/xraytest builds it) as a
// client of the link and fetches a local target through it. It is the one
// parser of links into client configs for tests.
package linktest

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
)

// TargetBody is what StartHTTPTarget answers on "/".
const TargetBody = xraytest.TargetBody

// Binary is the pinned Xray: $VPN_XRAY_BIN, else built from the module.
func Binary(t testing.TB) string { return xraytest.Binary(t) }

// StartTLSDest starts a local TLS 1.3 server to be a REALITY dest for the
// given server names and returns its host:port.
func StartTLSDest(t testing.TB, serverNames ...string) string {
	return xraytest.StartTLSDest(t, serverNames...)
}

// StartHTTPTarget starts a local HTTP server answering TargetBody and
// returns its URL.
func StartHTTPTarget(t testing.TB) string { return xraytest.StartHTTPTarget(t) }

// Outbound parses a client link (vless://…?security=reality, ss://,
// socks5://, http://) into the client side of it.
func Outbound(link string) (xraytest.Outbound, error) {
	u, err := url.Parse(link)
	if err != nil {
		return nil, fmt.Errorf("parsing link %s: %w", link, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil, fmt.Errorf("link %s: port: %w", link, err)
	}
	pass, _ := u.User.Password()
	q := u.Query()
	switch u.Scheme {
	case "vless":
		if q.Get("security") != "reality" {
			return nil, fmt.Errorf("link %s: security %q", link, q.Get("security"))
		}
		return xraytest.VLESSReality{
			UUID: u.User.Username(), Host: u.Hostname(), Port: port, SNI: q.Get("sni"), PublicKey: q.Get("pbk"),
			ShortID: q.Get("sid"), Fingerprint: q.Get("fp"), Flow: q.Get("flow"),
		}, nil
	case "ss":
		return xraytest.Shadowsocks2022{Method: u.User.Username(), Password: pass, Host: u.Hostname(), Port: port}, nil
	case "socks5":
		return xraytest.SOCKS5{User: u.User.Username(), Pass: pass, Host: u.Hostname(), Port: port}, nil
	case "http":
		return xraytest.HTTPProxy{User: u.User.Username(), Pass: pass, Host: u.Hostname(), Port: port}, nil
	}
	return nil, fmt.Errorf("link %s: unknown scheme %q", link, u.Scheme)
}

// Client is a running Xray client of one link.
type Client struct{ c *xraytest.Client }

// Start runs Xray (bin) as a client of link until the test ends.
func Start(t testing.TB, bin, link string) *Client {
	t.Helper()
	ob, err := Outbound(link)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{c: xraytest.StartClient(t, bin, ob)}
}

// Fetch gets target through the tunnel over a new connection and checks
// that it answered TargetBody.
func (c *Client) Fetch(ctx context.Context, target string) error {
	body, err := c.c.Get(ctx, target)
	if err != nil {
		return err
	}
	if string(body) != TargetBody {
		return fmt.Errorf("body %q", body)
	}
	return nil
}
