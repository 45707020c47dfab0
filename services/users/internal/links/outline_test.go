package links_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/links"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestOutlineAccessKey: an Outline link is ss://base64url(method:password)
// @host:port/?outline=1#name, it parses back, and the dynamic key body is
// the JSON Outline clients fetch.
func TestOutlineAccessKey(t *testing.T) {
	var c user.Credentials
	c.SetKey(protocol.Outline, user.Key{Password: "pw0123456789"})
	u := user.User{ID: "id1", Name: "alice", Protocols: []user.Protocol{protocol.Outline}, Credentials: c, Placement: user.Placement{All: true}}
	s := server.Server{ID: "s1", Node: "n1", Name: "fra", Engine: server.EngineXray,
		Inbounds: []server.Inbound{{Tag: "outline", Protocol: protocol.Outline, Port: 8389, Shadowsocks: &server.Shadowsocks{Method: protocol.ChaCha20IETFPoly1305}}},
		Status:   server.Status{State: server.StateApplied, PublicHost: "fra.example.net"}}
	ls, missing := links.ForUser(u, []server.Server{s}, nil, nil)
	if len(ls) != 1 || len(missing) != 0 {
		t.Fatalf("links %v, missing %v", ls, missing)
	}
	info := base64.RawURLEncoding.EncodeToString([]byte("chacha20-ietf-poly1305:pw0123456789"))
	if want := "ss://" + info + "@fra.example.net:8389/?outline=1#alice%40fra"; ls[0].URL != want {
		t.Fatalf("link %s, want %s", ls[0].URL, want)
	}
	u2, _ := url.Parse(ls[0].URL)
	if u2.Query().Get("outline") != "1" {
		t.Fatalf("no outline=1 in %s", ls[0].URL)
	}
	p, err := links.Parse(ls[0].URL)
	if err != nil || p.Protocol != protocol.Outline || p.Method != protocol.ChaCha20IETFPoly1305 || p.Password != "pw0123456789" || p.Host != "fra.example.net" || p.Port != 8389 {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	body, ct, err := links.Subscription(ls, user.FormatOutline)
	if err != nil || ct != "application/json" {
		t.Fatal(ct, err)
	}
	var cfg links.OutlineConfig
	if err := json.Unmarshal([]byte(body), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg != (links.OutlineConfig{Server: "fra.example.net", ServerPort: 8389, Password: "pw0123456789", Method: protocol.ChaCha20IETFPoly1305}) {
		t.Fatalf("config %+v", cfg)
	}
	for _, f := range []string{user.FormatClash, user.FormatSingBox} {
		body, _, err := links.Subscription(ls, f)
		if err != nil || !strings.Contains(body, "pw0123456789") || !strings.Contains(body, protocol.ChaCha20IETFPoly1305) {
			t.Fatalf("%s: %v\n%s", f, err, body)
		}
	}
	if _, _, err := links.Subscription(nil, user.FormatOutline); !errors.Is(err, errs.NotFound) {
		t.Fatalf("no outline link: %v", err)
	}
	// A user without the credential gets a reason, not a link.
	u.Credentials = user.Credentials{}
	if ls, missing := links.ForUser(u, []server.Server{s}, nil, nil); len(ls) != 0 || len(missing) != 1 || missing[0].Reason != "user has no outline credentials" {
		t.Fatalf("links %v, missing %v", ls, missing)
	}
}
