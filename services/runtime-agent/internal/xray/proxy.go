package xray

import (
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

// SOCKS5 and HTTP inbounds do not implement user management in Xray: their
// accounts are replaced whole (Client.replaceAccounts).
func init() {
	for proto, name := range map[Protocol]string{SOCKS5: "socks", HTTP: "http"} {
		kinds[proto] = kind{
			uses:        []string{"password"},
			user:        checkPassword,
			accountKind: name,
			credential: func(c user.Credentials) (User, string, bool) {
				acct := c.SOCKS5
				if proto == HTTP {
					acct = c.HTTP
				}
				if acct == nil {
					return User{}, "", false
				}
				return User{Password: acct.Password}, "", true
			},
			render: func(in Inbound, ic *inboundConfig) error {
				pass, err := randomSecret(24)
				if err != nil {
					return err
				}
				accounts := []map[string]string{{"user": placeholderID, "pass": pass}}
				for _, u := range in.Users {
					accounts = append(accounts, map[string]string{"user": u.ID, "pass": u.Password})
				}
				ic.Protocol = name
				if proto == SOCKS5 {
					ic.Settings = map[string]any{"auth": "password", "accounts": accounts, "udp": false}
				} else {
					ic.Settings = map[string]any{"accounts": accounts, "allowTransparent": false}
				}
				return nil
			},
		}
	}
}

// checkPassword checks a SOCKS5, HTTP or Outline password.
func checkPassword(v *validator, p string, _ Inbound, u User) {
	switch {
	case u.Password == "":
		v.add(join(p, "password"), "is required")
	case len(u.Password) > 255:
		// SOCKS5 user/password auth carries lengths in one byte.
		v.add(join(p, "password"), "must be at most 255 bytes")
	case strings.ContainsFunc(u.Password, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		v.add(join(p, "password"), "must not contain control characters")
	}
}
