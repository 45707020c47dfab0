package links

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// An Outline link is an Outline access key: SIP002 with the userinfo
// base64url(method:password) without padding, and ?outline=1, which
// Outline's apps and every SIP002 client read.
func init() {
	kinds[protocol.Outline] = kind{
		scheme: "ss",
		params: func(c user.Credentials, in server.Inbound, p *Params) string {
			k, ok := c.Key(protocol.Outline)
			switch {
			case !ok || k.Password == "":
				return "user has no outline credentials"
			case in.Shadowsocks == nil || in.Shadowsocks.Method == "":
				return "inbound has no shadowsocks method"
			}
			p.Method, p.Password = in.Shadowsocks.Method, k.Password
			return ""
		},
		build: func(p Params, hostport, frag string) string {
			info := base64.RawURLEncoding.EncodeToString([]byte(p.Method + ":" + p.Password))
			return "ss://" + info + "@" + hostport + "/?outline=1" + frag
		},
		parse: func(u *url.URL, p *Params) error {
			if _, ok := u.User.Password(); ok {
				return errNotMine
			}
			info := strings.TrimRight(u.User.Username(), "=")
			raw, err := base64.RawURLEncoding.DecodeString(info)
			if err != nil {
				raw, err = base64.RawStdEncoding.DecodeString(info)
			}
			method, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return fmt.Errorf("ss link whose userinfo is not base64 of method:password: %w", ErrUnsupported)
			}
			p.Method, p.Password = method, pass
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

// ContentTypeOutline is the content type of a dynamic access key's body.
const ContentTypeOutline = "application/json"

// OutlineConfig is the JSON an Outline client fetches for a dynamic access
// key (ssconf://): one Shadowsocks server.
type OutlineConfig struct {
	Server     string `json:"server"`
	ServerPort int    `json:"server_port"`
	Password   string `json:"password"`
	Method     string `json:"method"`
}

// Outline renders the dynamic access key body of the first Outline link
// in links: a user's links come sorted by node and server, so the key is
// stable while they are. It is errs.NotFound when no link is an Outline
// link.
func Outline(links []user.Link) (string, error) {
	for _, l := range links {
		if l.Protocol != protocol.Outline {
			continue
		}
		p, err := Parse(l.URL)
		if err != nil {
			return "", fmt.Errorf("rendering link of server %s: %w", l.Server, err)
		}
		b, err := json.Marshal(OutlineConfig{Server: p.Host, ServerPort: p.Port, Password: p.Password, Method: p.Method})
		if err != nil {
			return "", fmt.Errorf("encoding outline config: %w", err)
		}
		return string(b), nil
	}
	return "", errs.New(errs.NotFound, "user has no outline access key on a serving node")
}
