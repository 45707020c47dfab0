package servers_test

import (
	"errors"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestOutlineInbound: an Outline inbound defaults to
// chacha20-ietf-poly1305, keeps no server key, and refuses a method
// Outline clients cannot use, naming the rule.
func TestOutlineInbound(t *testing.T) {
	s, err := servers.New(server.CreateRequest{Node: "n1", Name: "o", Inbounds: []server.InboundRequest{{Protocol: protocol.Outline, Port: 8389}}}, testID, now)
	if err != nil {
		t.Fatal(err)
	}
	if in := s.Inbounds[0]; in.Tag != "outline" || in.Shadowsocks == nil || in.Shadowsocks.Method != protocol.ChaCha20IETFPoly1305 || in.Shadowsocks.ServerKey != "" {
		t.Fatalf("inbound %+v", in)
	}
	for _, m := range []string{protocol.AES128GCM, protocol.AES256GCM} {
		if _, err := servers.New(server.CreateRequest{Node: "n1", Name: "o", Inbounds: []server.InboundRequest{{Protocol: protocol.Outline, Port: 8389, Method: m}}}, testID, now); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	d, _ := protocol.Get(protocol.Outline)
	for _, bad := range []string{user.SS2022AES128GCM, "xchacha20-ietf-poly1305", "rc4-md5"} {
		_, err := servers.New(server.CreateRequest{Node: "n1", Name: "o", Inbounds: []server.InboundRequest{{Protocol: protocol.Outline, Port: 8389, Method: bad}}}, testID, now)
		fe := errs.FieldsOf(err)
		if !errors.Is(err, errs.Invalid) || len(fe) != 1 || fe[0].Field != "inbounds[0].method" || fe[0].Rule != d.MethodRule {
			t.Fatalf("method %s: %v %v", bad, err, fe)
		}
	}
	_, err = servers.New(server.CreateRequest{Node: "n1", Name: "o", Inbounds: []server.InboundRequest{{Protocol: protocol.Outline, Port: 8389, ServerKey: "x"}}}, testID, now)
	if fe := errs.FieldsOf(err); len(fe) != 1 || fe[0].Field != "inbounds[0].server_key" || fe[0].Rule != "is only for shadowsocks-2022" {
		t.Fatalf("server key on outline: %v", fe)
	}
}
