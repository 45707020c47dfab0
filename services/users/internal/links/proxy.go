package links

import (
	"net/url"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	kinds[user.SOCKS5] = proxyKind(user.SOCKS5, "socks5",
		// The agent's SOCKS inbound refuses UDP ASSOCIATE, so no udp here.
		func(p Params, c *ClashProxy) { c.Type, c.Username, c.Password = "socks5", p.Username, p.Password },
		func(p Params, o *SingBoxOutbound) {
			o.Type, o.Version, o.Username, o.Password = "socks", "5", p.Username, p.Password
		})
	kinds[user.HTTP] = proxyKind(user.HTTP, "http",
		func(p Params, c *ClashProxy) { c.Type, c.Username, c.Password = "http", p.Username, p.Password },
		func(p Params, o *SingBoxOutbound) { o.Type, o.Username, o.Password = "http", p.Username, p.Password })
}

// proxyKind is the kind of a SOCKS5 or HTTP proxy: user:password@host:port
// under scheme.
func proxyKind(proto user.Protocol, scheme string, clash func(Params, *ClashProxy), singBox func(Params, *SingBoxOutbound)) kind {
	return kind{
		scheme: scheme,
		params: func(c user.Credentials, _ server.Inbound, p *Params) string {
			acct := c.SOCKS5
			if proto == user.HTTP {
				acct = c.HTTP
			}
			if acct == nil {
				return "user has no " + string(proto) + " credentials"
			}
			p.Username, p.Password = acct.Username, acct.Password
			return ""
		},
		build: func(p Params, hostport, frag string) string {
			return scheme + "://" + escape(p.Username) + ":" + escape(p.Password) + "@" + hostport + frag
		},
		parse: func(u *url.URL, p *Params) error {
			pass, _ := u.User.Password()
			p.Username, p.Password = u.User.Username(), pass
			return nil
		},
		clash:   clash,
		singBox: singBox,
	}
}
