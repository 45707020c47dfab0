package servers

import (
	"github.com/vpnfleet/vpnfleet/services/users/internal/serverkeys"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func init() {
	inboundKinds[user.Shadowsocks2022] = inboundKind{norm: normShadowsocks, keys: shadowsocksKeys}
}

func normShadowsocks(fe *fields, p string, in server.InboundRequest) server.InboundRequest {
	if in.Method == "" {
		in.Method = DefaultMethod
	}
	switch in.Method {
	case user.SS2022AES128GCM, user.SS2022AES256GCM:
	case user.SS2022ChaCha20Poly1305:
		fe.add(p+".method", ChaChaRule)
		return in
	default:
		fe.add(p+".method", MethodRule)
		return in
	}
	if in.ServerKey != "" {
		if _, err := serverkeys.DecodeSS2022Key(in.Method, in.ServerKey); err != nil {
			fe.add(p+".server_key", err.Error())
		}
	}
	return in
}

// shadowsocksKeys gives a Shadowsocks-2022 inbound its method and server
// key: the request's, else the old inbound's while the method is the
// same, else a new one.
func shadowsocksKeys(ib *server.Inbound, in server.InboundRequest, old *server.Inbound) error {
	key := in.ServerKey
	if key == "" && old != nil && old.Shadowsocks != nil && old.Shadowsocks.Method == in.Method {
		key = old.Shadowsocks.ServerKey
	}
	if key == "" {
		k, err := serverkeys.NewSS2022Key(in.Method)
		if err != nil {
			return err
		}
		key = k
	}
	ib.Shadowsocks = &server.Shadowsocks{Method: in.Method, ServerKey: key}
	return nil
}
