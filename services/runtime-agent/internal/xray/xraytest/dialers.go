package xraytest

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"

	"golang.org/x/net/proxy"
)

// SOCKS5Dialer is a SOCKS5 client in this process (golang.org/x/net/proxy)
// that tunnels through the server at server (host:port) with user and
// pass: no client process between a test and the server.
func SOCKS5Dialer(user, pass, server string) (DialFunc, error) {
	d, err := proxy.SOCKS5("tcp", server, &proxy.Auth{User: user, Password: pass}, &net.Dialer{})
	if err != nil {
		return nil, fmt.Errorf("socks5 client for %s: %w", server, err)
	}
	return d.(proxy.ContextDialer).DialContext, nil
}

// HTTPConnectDialer is an HTTP proxy client in this process: it opens a
// tunnel with CONNECT through the server at server (host:port),
// authenticating with user and pass.
func HTTPConnectDialer(user, pass, server string) DialFunc {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", server)
		if err != nil {
			return nil, fmt.Errorf("dialing %s: %w", server, err)
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		defer stop()
		req := "CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\nProxy-Authorization: " + auth + "\r\n\r\n"
		if _, err := conn.Write([]byte(req)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("sending CONNECT to %s: %w", server, err)
		}
		// Read the reply byte by byte up to its end, so no tunnel byte is
		// taken from the connection.
		br := bufio.NewReaderSize(conn, 1)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("reading the CONNECT reply of %s: %w", server, err)
		}
		if resp.StatusCode != http.StatusOK {
			conn.Close()
			return nil, fmt.Errorf("CONNECT through %s: %s", server, resp.Status)
		}
		if br.Buffered() > 0 {
			conn.Close()
			return nil, fmt.Errorf("CONNECT through %s: bytes after the reply", server)
		}
		return conn, nil
	}
}
