package protocol

import (
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// shadowsocks2022 is Shadowsocks-2022 with one server key per inbound and
// one user key (uPSK) per user, served by Xray. A user key fits the
// inbounds whose method has its length (user.SS2022KeyLen).
var shadowsocks2022 = Descriptor{
	Name:          user.Shadowsocks2022,
	Engine:        server.EngineXray,
	Default:       true,
	Has:           func(c user.Credentials) bool { return c.Shadowsocks != nil },
	Clear:         func(c *user.Credentials) { c.Shadowsocks = nil },
	RequestFields: []string{"method", "server_key"},
	Methods:       []string{user.SS2022AES128GCM, user.SS2022AES256GCM},
	MethodRule:    "must be " + user.SS2022AES128GCM + " or " + user.SS2022AES256GCM,
}
