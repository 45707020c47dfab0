package daemon_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Jigsaw-Code/outline-sdk/transport"
	"github.com/Jigsaw-Code/outline-sdk/transport/shadowsocks"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/linktest"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestOutlineAccessKeysPassTraffic: a user with the outline protocol, on
// a server with an outline inbound, gets a static access key (ss://) and
// a dynamic one (ssconf://, whose JSON the gateway serves); Outline's own
// Shadowsocks client (outline-sdk) passes traffic through the server's
// Xray with each key as delivered. Disabled, the user is refused by the
// server and the dynamic key answers 404.
func TestOutlineAccessKeysPassTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vpnd with an Xray server; -short skips it")
	}
	xray := linktest.Binary(t)
	target := linktest.StartHTTPTarget(t)
	dir := t.TempDir()
	in := startInstallation(t, dir, xray, dir)
	in.waitNode(t)

	var srv server.Server
	in.admin.do(http.MethodPost, "/api/v1/servers", server.CreateRequest{Node: backupNode, Name: "outline",
		Inbounds: []server.InboundRequest{{Protocol: protocol.Outline, Port: freePortInt(t), Listen: "127.0.0.1"}}}, &srv, nil)
	in.waitApplied(t, []string{srv.ID})

	var u user.User
	in.admin.do(http.MethodPost, "/api/v1/users", user.CreateRequest{Name: "olivia", Protocols: []user.Protocol{protocol.Outline}}, &u, nil)
	var ls user.LinksResponse
	in.admin.do(http.MethodGet, "/api/v1/users/olivia/links", nil, &ls, nil)
	if len(ls.Links) != 1 || ls.Links[0].Protocol != protocol.Outline {
		t.Fatalf("links %+v", ls)
	}
	static := ls.Links[0].URL
	if !strings.HasPrefix(static, "ss://") || !strings.Contains(static, "/?outline=1#") {
		t.Fatalf("static key %s is not an Outline access key", static)
	}

	var sub struct {
		OutlineKey string `json:"outline_key"`
	}
	in.admin.do(http.MethodGet, "/api/v1/users/olivia/subscription", nil, &sub, nil)
	if !strings.HasPrefix(sub.OutlineKey, "ssconf://") {
		t.Fatalf("dynamic key %q", sub.OutlineKey)
	}
	// Outline's apps fetch ssconf:// over https; the installation's
	// public URL names a host of its own, so the test asks the gateway
	// itself for the same path.
	dynamic := func() (outlineConfig, int) {
		u, err := url.Parse(sub.OutlineKey)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get(in.GatewayURL + u.RequestURI())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var cfg outlineConfig
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
				t.Fatalf("dynamic key body: %v", err)
			}
		}
		return cfg, resp.StatusCode
	}
	cfg, code := dynamic()
	if code != http.StatusOK {
		t.Fatalf("dynamic key: %d", code)
	}
	if cfg.Method != protocol.ChaCha20IETFPoly1305 || cfg.Server != "127.0.0.1" {
		t.Fatalf("dynamic key config %+v", cfg)
	}

	keys := map[string]outlineConfig{"static ss://": staticConfig(t, static), "dynamic ssconf://": cfg}
	if keys["static ss://"] != cfg {
		t.Fatalf("the static key %+v and the dynamic one %+v differ", keys["static ss://"], cfg)
	}
	for name, k := range keys {
		waitfor.Cond(t, 30*time.Second, func() error { return k.fetch(target) })
		t.Logf("%s key passed traffic", name)
	}

	in.admin.do(http.MethodPost, "/api/v1/users/olivia/disable", map[string]any{}, nil, nil)
	waitfor.Cond(t, 30*time.Second, func() error {
		if err := cfg.fetch(target); err == nil {
			return errors.New("a disabled user still passes traffic")
		}
		return nil
	})
	if _, code := dynamic(); code != http.StatusNotFound {
		t.Fatalf("dynamic key of a disabled user: %d, want 404", code)
	}
}

// outlineConfig is what a dynamic access key's URL answers, and what a
// static key holds.
type outlineConfig struct {
	Server     string `json:"server"`
	ServerPort int    `json:"server_port"`
	Password   string `json:"password"`
	Method     string `json:"method"`
}

// staticConfig reads a static access key as Outline's apps do (SIP002:
// base64url of method:password, padded or not, then host:port).
func staticConfig(t *testing.T, key string) outlineConfig {
	t.Helper()
	u, err := url.Parse(key)
	if err != nil {
		t.Fatal(err)
	}
	info, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(u.User.Username(), "="))
	if err != nil {
		t.Fatalf("userinfo of %s: %v", key, err)
	}
	method, pass, ok := strings.Cut(string(info), ":")
	port, perr := strconv.Atoi(u.Port())
	if !ok || perr != nil {
		t.Fatalf("access key %s", key)
	}
	return outlineConfig{Server: u.Hostname(), ServerPort: port, Password: pass, Method: method}
}

// fetch gets target through the key's server with outline-sdk's
// Shadowsocks client and checks the answer.
func (c outlineConfig) fetch(target string) error {
	key, err := shadowsocks.NewEncryptionKey(c.Method, c.Password)
	if err != nil {
		return err
	}
	d, err := shadowsocks.NewStreamDialer(&transport.TCPEndpoint{Address: net.JoinHostPort(c.Server, strconv.Itoa(c.ServerPort))}, key)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return d.DialStream(ctx, addr) },
	}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(body) != linktest.TargetBody {
		return fmt.Errorf("body %q", body)
	}
	return nil
}
