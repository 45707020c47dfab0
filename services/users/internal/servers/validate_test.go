package servers_test

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/serverkeys"
	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

const testID = "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b"

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func vless(port int) server.InboundRequest {
	return server.InboundRequest{Protocol: user.VLESSReality, Port: port, Dest: "www.example.com:443"}
}

func ss(port int) server.InboundRequest {
	return server.InboundRequest{Protocol: user.Shadowsocks2022, Port: port}
}

func ptr[T any](v T) *T { return &v }

func TestNewFillsDefaultsAndKeys(t *testing.T) {
	s, err := servers.New(server.CreateRequest{Node: "n1", Name: "fra-1", Inbounds: []server.InboundRequest{
		vless(443), ss(8388), {Protocol: user.SOCKS5, Port: 1080, Listen: "10.0.0.1"}, {Protocol: user.HTTP, Port: 8080, Tag: "web"},
	}}, testID, now)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != testID || s.Engine != server.EngineXray || s.Status.State != server.StatePending || !s.CreatedAt.Equal(now) {
		t.Fatalf("server %+v", s)
	}
	assertValid(t, s)
	r := s.Inbounds[0].Reality
	if s.Inbounds[0].Tag != "vless-reality" || r.Fingerprint != "chrome" || len(r.ServerNames) != 1 || r.ServerNames[0] != "www.example.com" || len(r.ShortIDs) != 1 || len(r.ShortIDs[0]) != 8 {
		t.Fatalf("reality defaults %+v", r)
	}
	if sh := s.Inbounds[1].Shadowsocks; s.Inbounds[1].Tag != "shadowsocks-2022" || sh.Method != user.SS2022AES128GCM {
		t.Fatalf("shadowsocks defaults %+v", sh)
	}
	if s.Inbounds[2].Tag != "socks5" || s.Inbounds[2].Listen != "10.0.0.1" || s.Inbounds[3].Tag != "web" {
		t.Fatalf("proxy inbounds %+v", s.Inbounds[2:])
	}
	if s.Inbounds[2].Reality != nil || s.Inbounds[2].Shadowsocks != nil {
		t.Fatal("a socks5 inbound carries keys")
	}
	red := s.Redacted()
	if red.Inbounds[0].Reality.PrivateKey != "" || red.Inbounds[1].Shadowsocks.ServerKey != "" || red.Inbounds[0].Reality.PublicKey == "" {
		t.Fatalf("redacted %+v", red.Inbounds)
	}
	if s.Inbounds[0].Reality.PrivateKey == "" {
		t.Fatal("Redacted changed the original")
	}
}

func TestNewNormalisesAndImportsKeys(t *testing.T) {
	pair, err := serverkeys.NewX25519()
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	s, err := servers.New(server.CreateRequest{Node: "n1", Name: "x", Inbounds: []server.InboundRequest{
		{Protocol: user.VLESSReality, Port: 443, Dest: "WWW.Example.COM:443", ServerNames: []string{"A.example.com"}, ShortIDs: []string{"ABcd", ""}, Fingerprint: "firefox", PrivateKey: pair.Private},
		{Protocol: user.Shadowsocks2022, Port: 8388, Method: user.SS2022AES256GCM, ServerKey: key},
		{Protocol: user.VLESSReality, Tag: "v6", Port: 444, Dest: "[2001:db8::1]:8443", ServerNames: []string{"b.example.com"}},
	}}, testID, now)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Inbounds[0].Reality
	if r.Dest != "www.example.com:443" || r.ServerNames[0] != "a.example.com" || r.ShortIDs[0] != "abcd" || r.ShortIDs[1] != "" || r.Fingerprint != "firefox" {
		t.Fatalf("reality %+v", r)
	}
	if r.PrivateKey != pair.Private || r.PublicKey != pair.Public {
		t.Fatal("imported private key not kept, or public key not derived from it")
	}
	if s.Inbounds[1].Shadowsocks.ServerKey != key {
		t.Fatal("imported server key not kept")
	}
	if s.Inbounds[2].Reality.Dest != "[2001:db8::1]:8443" {
		t.Fatalf("ipv6 dest %q", s.Inbounds[2].Reality.Dest)
	}
}

// TestNewRejectsEveryBadField checks that each broken rule is reported
// under the field that broke it, and only there.
func TestNewRejectsEveryBadField(t *testing.T) {
	zero := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	ok := func() server.CreateRequest {
		return server.CreateRequest{Node: "n1", Name: "fra", Inbounds: []server.InboundRequest{vless(443), ss(8388)}}
	}
	with := func(f func(*server.CreateRequest)) server.CreateRequest { r := ok(); f(&r); return r }
	in0 := func(f func(*server.InboundRequest)) server.CreateRequest {
		return with(func(r *server.CreateRequest) { f(&r.Inbounds[0]) })
	}
	in1 := func(f func(*server.InboundRequest)) server.CreateRequest {
		return with(func(r *server.CreateRequest) { f(&r.Inbounds[1]) })
	}
	tests := []struct {
		name  string
		req   server.CreateRequest
		field string
		rule  string // a part of the rule, when it matters
	}{
		{"empty node", with(func(r *server.CreateRequest) { r.Node = "" }), "node", ""},
		{"node with a dot", with(func(r *server.CreateRequest) { r.Node = "n.1" }), "node", ""},
		{"empty name", with(func(r *server.CreateRequest) { r.Name = "" }), "name", ""},
		{"name with a space", with(func(r *server.CreateRequest) { r.Name = "a b" }), "name", ""},
		{"name too long", with(func(r *server.CreateRequest) { r.Name = strings.Repeat("a", 65) }), "name", ""},
		{"no inbounds", with(func(r *server.CreateRequest) { r.Inbounds = nil }), "inbounds", "at least one"},
		{"too many inbounds", with(func(r *server.CreateRequest) {
			r.Inbounds = nil
			for i := range servers.MaxInbounds + 1 {
				r.Inbounds = append(r.Inbounds, server.InboundRequest{Protocol: user.SOCKS5, Tag: "s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Port: 1000 + i})
			}
		}), "inbounds", "at most"},
		{"unknown protocol", in0(func(in *server.InboundRequest) { in.Protocol = "wireguard"; in.Dest = "" }), "inbounds[0].protocol", ""},
		{"port zero", in0(func(in *server.InboundRequest) { in.Port = 0 }), "inbounds[0].port", "1-65535"},
		{"port too big", in1(func(in *server.InboundRequest) { in.Port = 65536 }), "inbounds[1].port", "1-65535"},
		{"port twice", in1(func(in *server.InboundRequest) { in.Port = 443 }), "inbounds[1].port", "also used by inbounds[0]"},
		{"tag twice", in1(func(in *server.InboundRequest) { in.Tag = "vless-reality" }), "inbounds[1].tag", "also used by inbounds[0]"},
		{"tag api", in0(func(in *server.InboundRequest) { in.Tag = "api" }), "inbounds[0].tag", "reserved"},
		{"tag starts with a dot", in0(func(in *server.InboundRequest) { in.Tag = ".x" }), "inbounds[0].tag", ""},
		{"tag too long", in0(func(in *server.InboundRequest) { in.Tag = strings.Repeat("t", 65) }), "inbounds[0].tag", ""},
		{"listen not an ip", in0(func(in *server.InboundRequest) { in.Listen = "localhost" }), "inbounds[0].listen", ""},
		{"dest missing", in0(func(in *server.InboundRequest) { in.Dest = "" }), "inbounds[0].dest", "required"},
		{"dest without port", in0(func(in *server.InboundRequest) { in.Dest = "www.example.com" }), "inbounds[0].dest", ""},
		{"dest port zero", in0(func(in *server.InboundRequest) { in.Dest = "www.example.com:0" }), "inbounds[0].dest", ""},
		{"dest port too big", in0(func(in *server.InboundRequest) { in.Dest = "www.example.com:70000" }), "inbounds[0].dest", ""},
		{"dest bad host", in0(func(in *server.InboundRequest) { in.Dest = "exa_mple.com:443" }), "inbounds[0].dest", ""},
		{"dest ip without server names", in0(func(in *server.InboundRequest) { in.Dest = "1.2.3.4:443" }), "inbounds[0].server_names", "IP"},
		{"server name an ip", in0(func(in *server.InboundRequest) { in.ServerNames = []string{"ok.example.com", "1.2.3.4"} }), "inbounds[0].server_names[1]", ""},
		{"server name a wildcard", in0(func(in *server.InboundRequest) { in.ServerNames = []string{"*.example.com"} }), "inbounds[0].server_names[0]", ""},
		{"server name with a port", in0(func(in *server.InboundRequest) { in.ServerNames = []string{"example.com:443"} }), "inbounds[0].server_names[0]", ""},
		{"short id odd", in0(func(in *server.InboundRequest) { in.ShortIDs = []string{"abc"} }), "inbounds[0].short_ids[0]", ""},
		{"short id not hex", in0(func(in *server.InboundRequest) { in.ShortIDs = []string{"zz"} }), "inbounds[0].short_ids[0]", ""},
		{"short id too long", in0(func(in *server.InboundRequest) { in.ShortIDs = []string{strings.Repeat("ab", 9)} }), "inbounds[0].short_ids[0]", ""},
		{"unknown fingerprint", in0(func(in *server.InboundRequest) { in.Fingerprint = "netscape" }), "inbounds[0].fingerprint", "chrome"},
		{"private key not base64url", in0(func(in *server.InboundRequest) { in.PrivateKey = "abc+/=" }), "inbounds[0].private_key", "base64url"},
		{"private key short", in0(func(in *server.InboundRequest) { in.PrivateKey = "AAAA" }), "inbounds[0].private_key", "32 bytes"},
		{"private key all zero", in0(func(in *server.InboundRequest) { in.PrivateKey = zero }), "inbounds[0].private_key", "zeros"},
		{"chacha20", in1(func(in *server.InboundRequest) { in.Method = user.SS2022ChaCha20Poly1305 }), "inbounds[1].method", "several users"},
		{"old method", in1(func(in *server.InboundRequest) { in.Method = "aes-256-gcm" }), "inbounds[1].method", ""},
		{"server key not base64", in1(func(in *server.InboundRequest) { in.ServerKey = "%%%" }), "inbounds[1].server_key", "base64"},
		{"server key wrong length", in1(func(in *server.InboundRequest) { in.ServerKey = base64.StdEncoding.EncodeToString(make([]byte, 32)) }), "inbounds[1].server_key", "16 bytes"},
		{"dest on shadowsocks", in1(func(in *server.InboundRequest) { in.Dest = "a.com:443" }), "inbounds[1].dest", "only for vless-reality"},
		{"method on vless", in0(func(in *server.InboundRequest) { in.Method = user.SS2022AES128GCM }), "inbounds[0].method", "only for shadowsocks-2022"},
		{"server key on socks5", with(func(r *server.CreateRequest) {
			r.Inbounds = append(r.Inbounds, server.InboundRequest{Protocol: user.SOCKS5, Port: 1080, ServerKey: "x"})
		}), "inbounds[2].server_key", "only for shadowsocks-2022"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := servers.New(tt.req, testID, now)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != tt.field || !strings.Contains(fe[0].Rule, tt.rule) {
				t.Fatalf("fields %v, want only %s (%q)", fe, tt.field, tt.rule)
			}
		})
	}
	// A request broken everywhere reports every field at once.
	_, err := servers.New(server.CreateRequest{Inbounds: []server.InboundRequest{{Protocol: user.VLESSReality}}}, testID, now)
	if got := len(errs.FieldsOf(err)); got != 4 {
		t.Fatalf("fields %v, want node, name, port and dest", errs.FieldsOf(err))
	}
}

func TestApplyKeepsKeysOfUnchangedInbounds(t *testing.T) {
	s, err := servers.New(server.CreateRequest{Node: "n1", Name: "fra", Inbounds: []server.InboundRequest{vless(443), ss(8388)}}, testID, now)
	if err != nil {
		t.Fatal(err)
	}
	s.Revision = 3
	s.Status = server.Status{State: server.StateApplied, PublicHost: "fra.example.net", AppliedRevision: 3}
	orig := s

	// Same inbounds again: nothing changes, the status stays.
	same := s
	c, err := servers.Apply(&same, server.UpdateRequest{ID: testID, Inbounds: &[]server.InboundRequest{vless(443), ss(8388)}})
	if err != nil || c.Changed || same.Status.State != server.StateApplied {
		t.Fatalf("same inbounds: change %+v, %v, status %s", c, err, same.Status.State)
	}

	// A rename alone is not a spec change.
	renamed := s
	c, err = servers.Apply(&renamed, server.UpdateRequest{ID: testID, Name: ptr("fra-2")})
	if err != nil || !c.Changed || c.SpecChanged || renamed.Status.State != server.StateApplied || renamed.Name != "fra-2" {
		t.Fatalf("rename: change %+v, %v, %+v", c, err, renamed)
	}

	// A new port keeps the keys of inbounds with the same tag and protocol;
	// a new inbound gets its own; a new method gets a new key.
	next := s
	c, err = servers.Apply(&next, server.UpdateRequest{ID: testID, Inbounds: &[]server.InboundRequest{
		vless(8443),
		{Protocol: user.Shadowsocks2022, Port: 8388, Method: user.SS2022AES256GCM},
		{Protocol: user.VLESSReality, Tag: "second", Port: 9443, Dest: "www.example.com:443"},
	}})
	if err != nil || !c.SpecChanged || next.Status.State != server.StatePending || next.Status.PublicHost != "fra.example.net" {
		t.Fatalf("spec change: %+v, %v, status %+v", c, err, next.Status)
	}
	assertValid(t, next)
	if got, want := next.Inbounds[0].Reality, orig.Inbounds[0].Reality; got.PrivateKey != want.PrivateKey || got.PublicKey != want.PublicKey || got.ShortIDs[0] != want.ShortIDs[0] {
		t.Fatal("the vless inbound lost its keys or short id")
	}
	if next.Inbounds[1].Shadowsocks.ServerKey == orig.Inbounds[1].Shadowsocks.ServerKey {
		t.Fatal("a new method kept the old key (of another length)")
	}
	if next.Inbounds[2].Reality.PrivateKey == orig.Inbounds[0].Reality.PrivateKey {
		t.Fatal("a new inbound reused another inbound's key")
	}
	if orig.Inbounds[0].Port != 443 || s.Status.State != server.StateApplied {
		t.Fatal("Apply changed the original's inbounds")
	}

	// The protocol under a tag changed: new keys.
	swapped := s
	if _, err := servers.Apply(&swapped, server.UpdateRequest{ID: testID, Inbounds: &[]server.InboundRequest{{Tag: "vless-reality", Protocol: user.SOCKS5, Port: 443}}}); err != nil {
		t.Fatal(err)
	}
	if swapped.Inbounds[0].Reality != nil {
		t.Fatal("socks5 inbound kept reality settings")
	}

	if _, err := servers.Apply(&s, server.UpdateRequest{ID: "nope", Name: ptr("a b")}); len(errs.FieldsOf(err)) != 2 {
		t.Fatalf("bad update: %v, want id and name", err)
	}
}

// assertValid checks what every accepted server must satisfy.
func assertValid(t testing.TB, s server.Server) {
	t.Helper()
	if len(s.Inbounds) == 0 {
		t.Fatal("no inbounds")
	}
	tags, ports := map[string]bool{}, map[int]bool{}
	for _, in := range s.Inbounds {
		if in.Tag == "" || in.Tag == servers.APITag || tags[in.Tag] {
			t.Fatalf("tag %q", in.Tag)
		}
		if in.Port < 1 || in.Port > 65535 || ports[in.Port] {
			t.Fatalf("port %d", in.Port)
		}
		tags[in.Tag], ports[in.Port] = true, true
		switch in.Protocol {
		case user.VLESSReality:
			r := in.Reality
			if r == nil || len(r.ServerNames) == 0 || len(r.ShortIDs) == 0 || r.Dest == "" || r.Fingerprint == "" {
				t.Fatalf("reality %+v", r)
			}
			pair, err := serverkeys.X25519FromPrivate(r.PrivateKey)
			if err != nil || pair.Public != r.PublicKey {
				t.Fatalf("reality keys do not match: %v", err)
			}
		case user.Shadowsocks2022:
			if in.Shadowsocks == nil {
				t.Fatal("shadowsocks settings missing")
			}
			if _, err := serverkeys.DecodeSS2022Key(in.Shadowsocks.Method, in.Shadowsocks.ServerKey); err != nil {
				t.Fatalf("server key: %v", err)
			}
		case user.SOCKS5, user.HTTP:
			if in.Reality != nil || in.Shadowsocks != nil {
				t.Fatal("proxy inbound with keys")
			}
		default:
			t.Fatalf("protocol %q", in.Protocol)
		}
	}
}
