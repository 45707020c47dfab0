package protocol

import (
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// socks5 and httpProxy are plain proxies with a user name (the user's id)
// and password (user.Proxy), served by Xray. Their inbounds take no
// settings of their own.
var (
	socks5 = Descriptor{
		Name:    user.SOCKS5,
		Engine:  server.EngineXray,
		Default: true,
		Has:     func(c user.Credentials) bool { return c.SOCKS5 != nil },
		Clear:   func(c *user.Credentials) { c.SOCKS5 = nil },
	}
	httpProxy = Descriptor{
		Name:    user.HTTP,
		Engine:  server.EngineXray,
		Default: true,
		Has:     func(c user.Credentials) bool { return c.HTTP != nil },
		Clear:   func(c *user.Credentials) { c.HTTP = nil },
	}
)
