package xray_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
)

// TestOutlineInboundLive: an Outline inbound (classic AEAD Shadowsocks,
// one password per user) serves the users it starts with and those added
// live, lists them, counts their traffic per user, and refuses a removed
// user; a method Outline clients cannot use is refused by name.
func TestOutlineInboundLive(t *testing.T) {
	target := xraytest.StartHTTPTarget(t)
	in := xray.Inbound{
		Tag: "outline", Protocol: xray.Outline, Listen: "127.0.0.1", Port: xraytest.FreePort(t),
		Shadowsocks: &xray.Shadowsocks{Method: protocol.ChaCha20IETFPoly1305},
		Users:       []xray.User{{ID: "seed-outline", Password: "seed-password-0123456789"}},
	}
	s := runServer(t, xray.Spec{AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}})
	in.Users = nil
	client := func(u xray.User) *xraytest.Client {
		// Xray's own shadowsocks outbound speaks the classic methods too.
		return xraytest.StartClient(t, xraytest.Binary(t), xraytest.Shadowsocks2022{
			Method: in.Shadowsocks.Method, Password: u.Password, Host: in.Listen, Port: in.Port})
	}
	seed := client(xray.User{Password: "seed-password-0123456789"})
	if _, err := fetch(seed, target); err != nil {
		t.Fatalf("seeded user: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	alice := xray.User{ID: "alice", Password: "alice-password-0123456789"}
	if err := s.api.AddUsers(ctx, in, []xray.User{alice}); err != nil {
		t.Fatal(err)
	}
	ac := client(alice)
	body, err := fetch(ac, target)
	if err != nil {
		t.Fatalf("user added live: %v", err)
	}
	waitTraffic(t, s.api, "alice", func(tr xray.Traffic) bool { return tr.Downlink >= int64(len(body)) && tr.Uplink > 0 })
	if ids, err := s.api.InboundUsers(ctx, in); err != nil || !slices.Equal(ids, []string{"alice", "seed-outline"}) {
		t.Fatalf("inbound users %v, %v", ids, err)
	}

	if err := s.api.RemoveUsers(ctx, in, []string{"alice"}); err != nil {
		t.Fatal(err)
	}
	fetchFails(t, client(alice), target, "removed alice")
	if _, err := fetch(seed, target); err != nil {
		t.Fatalf("seeded user after alice left: %v", err)
	}

	// A wrong password is refused at AddUser, before Xray sees it.
	if err := s.api.AddUser(ctx, in, xray.User{ID: "bob"}); !errors.Is(err, errs.Invalid) {
		t.Fatalf("user without password: %v", err)
	}
	bad := in
	bad.Shadowsocks = &xray.Shadowsocks{Method: "2022-blake3-aes-128-gcm"}
	fe := errs.FieldsOf(bad.Validate())
	d, _ := protocol.Get(protocol.Outline)
	if len(fe) != 1 || fe[0].Field != "shadowsocks.method" || fe[0].Rule != d.MethodRule {
		t.Fatalf("outline inbound with a 2022 method: %v", fe)
	}
}
