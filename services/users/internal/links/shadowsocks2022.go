package links

import (
	"fmt"
	"net/url"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	kinds[user.Shadowsocks2022] = kind{
		scheme: "ss",
		params: func(c user.Credentials, in server.Inbound, p *Params) string {
			ss := in.Shadowsocks
			switch {
			case c.Shadowsocks == nil:
				return "user has no shadowsocks credentials"
			case ss == nil || ss.ServerKey == "":
				return "inbound has no shadowsocks method or server key"
			case ss.Method == user.SS2022ChaCha20Poly1305:
				return "inbound method " + ss.Method + " does not support several users"
			}
			want, ok := user.SS2022KeyLen(ss.Method)
			have, _ := user.SS2022KeyLen(c.Shadowsocks.Method)
			if !ok || want != have {
				return fmt.Sprintf("user key is for %s, inbound uses %s", c.Shadowsocks.Method, ss.Method)
			}
			p.Method, p.Password = ss.Method, ss.ServerKey+":"+c.Shadowsocks.Key
			return ""
		},
		build: func(p Params, hostport, frag string) string {
			// SIP002 for 2022 methods: userinfo is method:password
			// percent-encoded, not base64.
			return "ss://" + escape(p.Method) + ":" + escape(p.Password) + "@" + hostport + frag
		},
		parse: func(u *url.URL, p *Params) error {
			pass, ok := u.User.Password()
			if !ok {
				return errNotMine
			}
			p.Method, p.Password = u.User.Username(), pass
			return nil
		},
		clash: func(p Params, c *ClashProxy) {
			c.Type, c.UDP, c.Cipher, c.Password = "ss", true, p.Method, p.Password
		},
		singBox: func(p Params, o *SingBoxOutbound) {
			o.Type, o.Method, o.Password = "shadowsocks", p.Method, p.Password
		},
	}
}
