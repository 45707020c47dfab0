package xray

import (
	"google.golang.org/protobuf/proto"

	"github.com/xtls/xray-core/proxy/vless"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	kinds[VLESSReality] = kind{
		reality:    true,
		settings:   func(v *validator, p string, in Inbound) { in.Reality.validate(v, join(p, "reality")) },
		uses:       []string{"uuid", "flow"},
		uniqueUUID: true,
		user: func(v *validator, p string, _ Inbound, u User) {
			if !uuidRe.MatchString(u.UUID) {
				v.add(join(p, "uuid"), "must be a lowercase UUID like 0f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60")
			}
			if u.Flow != "" && u.Flow != FlowVision {
				v.add(join(p, "flow"), "must be empty or "+FlowVision)
			}
		},
		render: func(in Inbound, ic *inboundConfig) error {
			clients := make([]map[string]any, 0, len(in.Users))
			for _, u := range in.Users {
				clients = append(clients, map[string]any{"id": u.UUID, "email": u.ID, "flow": flowOf(u), "level": 0})
			}
			ic.Protocol = "vless"
			ic.Settings = map[string]any{"clients": clients, "decryption": "none"}
			ic.StreamSettings = &streamSettings{
				Network:  "raw",
				Security: "reality",
				Reality: &realitySettings{
					Target:      in.Reality.Dest,
					ServerNames: in.Reality.ServerNames,
					PrivateKey:  in.Reality.PrivateKey,
					ShortIDs:    in.Reality.ShortIDs,
				},
			}
			return nil
		},
		credential: func(c user.Credentials) (User, string, bool) {
			if c.VLESS == nil {
				return User{}, "", false
			}
			return User{UUID: c.VLESS.UUID, Flow: c.VLESS.Flow}, "", true
		},
		account: func(_ Inbound, u User) proto.Message { return &vless.Account{Id: u.UUID, Flow: flowOf(u)} },
	}
}
