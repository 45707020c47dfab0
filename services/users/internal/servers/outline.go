package servers

import (
	"slices"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// An Outline inbound names a classic AEAD method (default
// chacha20-ietf-poly1305) and has no server key: each user's password is
// its key.
func init() {
	d, _ := protocol.Get(protocol.Outline)
	inboundKinds[protocol.Outline] = inboundKind{
		norm: func(fe *fields, p string, in server.InboundRequest) server.InboundRequest {
			if in.Method == "" {
				in.Method = d.Methods[0]
			} else if !slices.Contains(d.Methods, in.Method) {
				fe.add(p+".method", d.MethodRule)
			}
			return in
		},
		keys: func(ib *server.Inbound, in server.InboundRequest, _ *server.Inbound) error {
			ib.Shadowsocks = &server.Shadowsocks{Method: in.Method}
			return nil
		},
	}
}
