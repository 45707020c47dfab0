package xray

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/xtls/xray-core/proxy/shadowsocks"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Outline is Shadowsocks with a classic AEAD method, which Outline's apps
// speak: Xray's shadowsocks inbound with one client per user, each with
// the inbound's method and the user's password. Users change live with
// AlterInbound; with no user the inbound lets no one in.
const Outline = Protocol(protocol.Outline)

// ciphers maps the classic methods to Xray's cipher types.
var ciphers = map[string]shadowsocks.CipherType{
	protocol.ChaCha20IETFPoly1305: shadowsocks.CipherType_CHACHA20_POLY1305,
	protocol.AES128GCM:            shadowsocks.CipherType_AES_128_GCM,
	protocol.AES256GCM:            shadowsocks.CipherType_AES_256_GCM,
}

func init() {
	d, _ := protocol.Get(protocol.Outline)
	kinds[Outline] = kind{
		shadowsocks: true,
		settings: func(v *validator, p string, in Inbound) {
			if _, ok := ciphers[in.Shadowsocks.Method]; !ok || !slices.Contains(d.Methods, in.Shadowsocks.Method) {
				v.add(join(p, "shadowsocks.method"), d.MethodRule)
			}
			if in.Shadowsocks.Key != "" {
				v.add(join(p, "shadowsocks.key"), "must be empty for outline: each user's password is its key")
			}
		},
		uses: []string{"password"},
		udp:  true,
		user: checkPassword,
		render: func(in Inbound, ic *inboundConfig) error {
			clients := make([]map[string]any, 0, len(in.Users))
			for _, u := range in.Users {
				clients = append(clients, map[string]any{"method": in.Shadowsocks.Method, "password": u.Password, "email": u.ID, "level": 0})
			}
			ic.Protocol = "shadowsocks"
			ic.Settings = map[string]any{"clients": clients, "network": "tcp,udp"}
			return nil
		},
		credential: func(c user.Credentials) (User, string, bool) {
			k, ok := c.Key(protocol.Outline)
			return User{Password: k.Password}, "", ok
		},
		account: func(in Inbound, u User) proto.Message {
			return &shadowsocks.Account{Password: u.Password, CipherType: ciphers[in.Shadowsocks.Method]}
		},
	}
}
