package links

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	kinds[user.VLESSReality] = kind{
		scheme: "vless",
		params: func(c user.Credentials, in server.Inbound, p *Params) string {
			r := in.Reality
			switch {
			case c.VLESS == nil:
				return "user has no vless credentials"
			case r == nil || r.PublicKey == "" || len(r.ServerNames) == 0:
				return "inbound has no reality public key or server name"
			}
			p.UUID, p.Flow = c.VLESS.UUID, c.VLESS.Flow
			p.SNI, p.PublicKey = r.ServerNames[0], r.PublicKey
			if len(r.ShortIDs) > 0 {
				p.ShortID = r.ShortIDs[0]
			}
			p.Fingerprint = r.Fingerprint
			if p.Fingerprint == "" {
				p.Fingerprint = DefaultFingerprint
			}
			return ""
		},
		build: func(p Params, hostport, frag string) string {
			q := url.Values{}
			q.Set("type", "tcp")
			q.Set("security", "reality")
			q.Set("encryption", "none")
			q.Set("flow", p.Flow)
			q.Set("sni", p.SNI)
			q.Set("pbk", p.PublicKey)
			q.Set("sid", p.ShortID)
			q.Set("fp", p.Fingerprint)
			// A fixed order reads better than url.Values' sorted one.
			var b strings.Builder
			for i, k := range []string{"type", "security", "encryption", "flow", "sni", "pbk", "sid", "fp"} {
				if i > 0 {
					b.WriteByte('&')
				}
				b.WriteString(k + "=" + escape(q.Get(k)))
			}
			return "vless://" + escape(p.UUID) + "@" + hostport + "?" + b.String() + frag
		},
		parse: func(u *url.URL, p *Params) error {
			q := u.Query()
			if q.Get("security") != "reality" {
				return fmt.Errorf("vless link with security %q: %w", q.Get("security"), ErrUnsupported)
			}
			p.UUID = u.User.Username()
			p.Flow, p.SNI, p.PublicKey, p.ShortID, p.Fingerprint = q.Get("flow"), q.Get("sni"), q.Get("pbk"), q.Get("sid"), q.Get("fp")
			return nil
		},
		clash: func(p Params, c *ClashProxy) {
			c.Type, c.UDP, c.UUID, c.Network, c.TLS, c.Flow, c.SNI, c.Fingerprint = "vless", true, p.UUID, "tcp", true, p.Flow, p.SNI, p.Fingerprint
			c.Reality = &struct {
				PublicKey string `yaml:"public-key"`
				ShortID   string `yaml:"short-id"`
			}{p.PublicKey, p.ShortID}
		},
		singBox: func(p Params, o *SingBoxOutbound) {
			o.Type, o.UUID, o.Flow = "vless", p.UUID, p.Flow
			t := &SingBoxTLS{Enabled: true, ServerName: p.SNI}
			t.UTLS.Enabled, t.UTLS.Fingerprint = true, p.Fingerprint
			t.Reality.Enabled, t.Reality.PublicKey, t.Reality.ShortID = true, p.PublicKey, p.ShortID
			o.TLS = t
		},
	}
}
