package reconcile

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const uid = "0f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60"

func testUser() user.User {
	return user.User{
		ID: uid, Name: "ann", Status: user.StatusActive,
		Protocols: user.Protocols,
		Credentials: user.Credentials{
			VLESS:       &user.VLESS{UUID: "1f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60", Flow: user.FlowVision},
			Shadowsocks: &user.Shadowsocks{Method: user.SS2022AES128GCM, Key: "AAECAwQFBgcICQoLDA0ODw=="},
			SOCKS5:      &user.Proxy{Username: uid, Password: "pw1"},
			HTTP:        &user.Proxy{Username: uid, Password: "pw2"},
		},
		Placement: user.Placement{Nodes: []string{"n1"}},
	}
}

func TestMemberOf(t *testing.T) {
	ss128 := xray.Inbound{Tag: "ss", Protocol: xray.Shadowsocks2022, Shadowsocks: &xray.Shadowsocks{Method: xray.SS2022AES128GCM}}
	ss256 := xray.Inbound{Tag: "ss2", Protocol: xray.Shadowsocks2022, Shadowsocks: &xray.Shadowsocks{Method: xray.SS2022AES256GCM}}
	tests := []struct {
		name   string
		change func(*user.User)
		served bool
	}{
		{"active", func(*user.User) {}, true},
		{"on hold is served", func(u *user.User) { u.Status = user.StatusOnHold }, true},
		{"disabled", func(u *user.User) { u.Status = user.StatusDisabled }, false},
		{"limited", func(u *user.User) { u.Status = user.StatusLimited }, false},
		{"expired", func(u *user.User) { u.Status = user.StatusExpired }, false},
		// Placement is the registry's: a user in the view is served.
		{"placement is not looked at", func(u *user.User) { u.Placement = user.Placement{} }, true},
		{"no credentials", func(u *user.User) { u.Credentials = user.Credentials{} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := testUser()
			tt.change(&u)
			m := memberOf(u)
			if (m != nil) != tt.served {
				t.Fatalf("served = %v, want %v", m != nil, tt.served)
			}
		})
	}
	m := memberOf(testUser())
	if _, _, ok := m.on(ss128); !ok {
		t.Error("a 16-byte key is not served on an aes-128 inbound")
	}
	if _, _, ok := m.on(ss256); ok {
		t.Error("a 16-byte key is served on an aes-256 inbound")
	}
	if u, _, ok := m.on(xray.Inbound{Protocol: xray.SOCKS5}); !ok || u.ID != uid || u.Password != "pw1" {
		t.Errorf("socks user %+v, %v", u, ok)
	}
}

// TestMemberKey: what Xray holds changes the key; usage, names and limits
// do not, so such updates are dropped early.
func TestMemberKey(t *testing.T) {
	base := memberOf(testUser()).key
	same := []func(*user.User){
		func(u *user.User) { u.Usage.UsedUp += 1 << 20; u.Usage.Windows = map[string]uint64{"n1": 7} },
		func(u *user.User) { u.Name, u.Note, u.TrafficLimitBytes = "bob", "x", 1 },
		func(u *user.User) { u.Status = user.StatusOnHold },
	}
	for i, change := range same {
		u := testUser()
		change(&u)
		if k := memberOf(u).key; k != base {
			t.Errorf("change %d moved the key", i)
		}
	}
	differ := []func(*user.User){
		func(u *user.User) { u.Credentials.SOCKS5.Password = "other" },
		func(u *user.User) { u.Credentials.VLESS.UUID = "2f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60" },
		func(u *user.User) { u.Protocols = []user.Protocol{user.VLESSReality} },
	}
	for i, change := range differ {
		u := testUser()
		change(&u)
		if k := memberOf(u).key; k == base {
			t.Errorf("credential change %d kept the key", i)
		}
	}
}

func TestXraySpecReportsServerFields(t *testing.T) {
	kp, err := xray.NewX25519KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	s := server.Server{
		ID: "s", Node: "n1", Engine: server.EngineXray,
		Inbounds: []server.Inbound{{Tag: "v", Protocol: user.VLESSReality, Port: 8443, Reality: &server.Reality{
			ServerNames: []string{"www.example.com"}, Dest: "www.example.com:443", PrivateKey: kp.PrivateKey, ShortIDs: []string{""},
		}}},
	}
	if _, err := xraySpec(s, "n1", "127.0.0.1:10085", specOptions{}); err != nil {
		t.Fatalf("valid server: %v", err)
	}
	s.Engine = "wireguard"
	s.Inbounds[0].Reality.PrivateKey = "!!"
	_, err = xraySpec(s, "n2", "127.0.0.1:10085", specOptions{})
	if !errors.Is(err, errs.Invalid) {
		t.Fatalf("err %v, want Invalid", err)
	}
	for _, field := range []string{"engine", "node", "inbounds[0].reality.private_key"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
	a, b := s, s
	b.Name, b.Status, b.Revision = "renamed", server.Status{State: server.StateApplied}, 99
	if specKey(a) != specKey(b) {
		t.Error("a rename or a status write changed the spec key")
	}
}

// TestEveryProtocolHasASlot: a protocol added to shared/protocol (the
// defaults in user.Protocols and the others) needs a member slot
// (protocolCount), or its users would be dropped silently.
func TestEveryProtocolHasASlot(t *testing.T) {
	if protocolCount != len(protocol.All) {
		t.Fatalf("protocolCount = %d, shared/protocol has %d", protocolCount, len(protocol.All))
	}
	for _, p := range protocol.Names() {
		if _, ok := slotOf(p); !ok {
			t.Fatalf("protocol %s has no slot", p)
		}
	}
}
