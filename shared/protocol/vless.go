package protocol

import (
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// vlessReality is VLESS with XTLS Vision over REALITY, served by Xray. The
// credential is a UUID (user.VLESS); an inbound borrows a TLS site (dest)
// and carries an X25519 key pair and short ids (server.Reality).
var vlessReality = Descriptor{
	Name:          user.VLESSReality,
	Engine:        server.EngineXray,
	Default:       true,
	Has:           func(c user.Credentials) bool { return c.VLESS != nil },
	Clear:         func(c *user.Credentials) { c.VLESS = nil },
	RequestFields: []string{"dest", "server_names", "short_ids", "fingerprint", "private_key"},
}
