package xraytest

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sagernet/sing-shadowsocks/shadowaead_2022"
	M "github.com/sagernet/sing/common/metadata"
)

// SS2022Dialer is a Shadowsocks-2022 client from sing-shadowsocks, a client
// stack independent of Xray's, in this process: each dial opens one TCP
// connection to the server at server (host:port) and tunnels to addr.
// password is "serverKey:userKey" for a multi-user server. Unlike Xray's
// own client, it passes the server's closing of a connection on to the
// caller as io.EOF.
func SS2022Dialer(method, password, server string) (DialFunc, error) {
	m, err := shadowaead_2022.NewWithPassword(method, password, time.Now)
	if err != nil {
		return nil, fmt.Errorf("shadowsocks-2022 client for %s: %w", method, err)
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", server)
		if err != nil {
			return nil, fmt.Errorf("dialing %s: %w", server, err)
		}
		sc, err := m.DialConn(conn, M.ParseSocksaddr(addr))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("shadowsocks-2022 handshake with %s: %w", server, err)
		}
		return sc, nil
	}, nil
}
