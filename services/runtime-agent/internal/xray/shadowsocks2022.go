package xray

import (
	"encoding/base64"

	"google.golang.org/protobuf/proto"

	"github.com/xtls/xray-core/proxy/shadowsocks_2022"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	kinds[Shadowsocks2022] = kind{
		shadowsocks: true,
		settings:    func(v *validator, p string, in Inbound) { in.Shadowsocks.validate(v, join(p, "shadowsocks")) },
		uses:        []string{"key"},
		user: func(v *validator, p string, in Inbound, u User) {
			if in.Shadowsocks == nil {
				v.add(join(p, "key"), "cannot be checked without the inbound's shadowsocks method")
				return
			}
			if _, err := SS2022KeyLen(in.Shadowsocks.Method); err == nil {
				if _, err := DecodeSS2022Key(in.Shadowsocks.Method, u.Key); err != nil {
					v.add(join(p, "key"), err.Error())
				}
			}
		},
		render: func(in Inbound, ic *inboundConfig) error {
			key, err := randomSecret(mustKeyLen(in.Shadowsocks.Method))
			if err != nil {
				return err
			}
			clients := []map[string]any{{"password": key, "email": placeholderID, "level": 0}}
			for _, u := range in.Users {
				clients = append(clients, map[string]any{"password": u.Key, "email": u.ID, "level": 0})
			}
			ic.Protocol = "shadowsocks"
			ic.Settings = map[string]any{
				"method": in.Shadowsocks.Method, "password": in.Shadowsocks.Key,
				"clients": clients, "network": "tcp,udp",
			}
			return nil
		},
		credential: func(c user.Credentials) (User, string, bool) {
			if c.Shadowsocks == nil {
				return User{}, "", false
			}
			if _, err := SS2022KeyLen(c.Shadowsocks.Method); err != nil {
				return User{}, "", false
			}
			return User{Key: c.Shadowsocks.Key}, c.Shadowsocks.Method, true
		},
		account: func(_ Inbound, u User) proto.Message { return &shadowsocks_2022.Account{Key: u.Key} },
		batch:   true,
		udp:     true,
		// A user key fits the inbounds whose method has its length.
		fits: func(in Inbound, u User) bool {
			if in.Shadowsocks == nil {
				return false
			}
			n, err := SS2022KeyLen(in.Shadowsocks.Method)
			return err == nil && len(u.Key) == base64.StdEncoding.EncodedLen(n)
		},
	}
}

func (s Shadowsocks) validate(v *validator, p string) {
	switch s.Method {
	case SS2022AES128GCM, SS2022AES256GCM:
	case SS2022ChaCha20Poly1305:
		v.add(join(p, "method"), "2022-blake3-chacha20-poly1305 has no multi-user mode in Xray; use an aes method")
		return
	default:
		v.add(join(p, "method"), "must be "+SS2022AES128GCM+" or "+SS2022AES256GCM)
		return
	}
	if _, err := DecodeSS2022Key(s.Method, s.Key); err != nil {
		v.add(join(p, "key"), err.Error())
	}
}
