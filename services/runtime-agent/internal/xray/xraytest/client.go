package xraytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// Outbound is the server side of a client: the fields of one share link.
// The implementations are VLESSReality, Shadowsocks2022, SOCKS5 and
// HTTPProxy.
type Outbound interface {
	outbound() map[string]any
}

// VLESSReality holds the fields of a vless://…?security=reality link.
type VLESSReality struct {
	UUID        string
	Host        string
	Port        int
	SNI         string // sni
	PublicKey   string // pbk
	ShortID     string // sid
	Fingerprint string // fp; empty means chrome
	Flow        string // flow
}

func (o VLESSReality) outbound() map[string]any {
	fp := o.Fingerprint
	if fp == "" {
		fp = "chrome"
	}
	return map[string]any{
		"protocol": "vless",
		"settings": map[string]any{"vnext": []any{map[string]any{
			"address": o.Host, "port": o.Port,
			"users": []any{map[string]any{"id": o.UUID, "encryption": "none", "flow": o.Flow}},
		}}},
		"streamSettings": map[string]any{
			"network":  "raw",
			"security": "reality",
			"realitySettings": map[string]any{
				"serverName": o.SNI, "fingerprint": fp, "publicKey": o.PublicKey,
				"shortId": o.ShortID, "spiderX": "/",
			},
		},
	}
}

// Shadowsocks2022 holds the fields of an ss:// link for Shadowsocks-2022.
// For a multi-user server Password is "serverKey:userKey".
type Shadowsocks2022 struct {
	Method   string
	Password string
	Host     string
	Port     int
}

func (o Shadowsocks2022) outbound() map[string]any {
	return map[string]any{
		"protocol": "shadowsocks",
		"settings": map[string]any{"servers": []any{map[string]any{
			"address": o.Host, "port": o.Port, "method": o.Method, "password": o.Password,
		}}},
	}
}

// SOCKS5 holds the fields of a socks5:// link.
type SOCKS5 struct {
	User, Pass string
	Host       string
	Port       int
}

func (o SOCKS5) outbound() map[string]any {
	return map[string]any{
		"protocol": "socks",
		"settings": map[string]any{"servers": []any{map[string]any{
			"address": o.Host, "port": o.Port,
			"users": []any{map[string]any{"user": o.User, "pass": o.Pass}},
		}}},
	}
}

// HTTPProxy holds the fields of an http:// proxy link.
type HTTPProxy struct {
	User, Pass string
	Host       string
	Port       int
}

func (o HTTPProxy) outbound() map[string]any {
	return map[string]any{
		"protocol": "http",
		"settings": map[string]any{"servers": []any{map[string]any{
			"address": o.Host, "port": o.Port,
			"users": []any{map[string]any{"user": o.User, "pass": o.Pass}},
		}}},
	}
}

// ClientConfig writes the config of an Xray client that accepts SOCKS5
// (no auth) on socksAddr and sends everything through ob.
func ClientConfig(socksAddr string, ob Outbound) ([]byte, error) {
	host, port, err := net.SplitHostPort(socksAddr)
	if err != nil {
		return nil, fmt.Errorf("parsing socks address: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("parsing socks port: %w", err)
	}
	out := ob.outbound()
	out["tag"] = "proxy"
	cfg := map[string]any{
		"log": map[string]any{"loglevel": "warning", "access": "none"},
		"inbounds": []any{map[string]any{
			"tag": "socks-in", "listen": host, "port": p, "protocol": "socks",
			"settings": map[string]any{"auth": "noauth", "udp": false},
		}},
		"outbounds": []any{out},
		// When one side of a connection ends, end the other at once (Xray
		// waits a second by default): a test sees a server's close when
		// it happens.
		"policy": map[string]any{"levels": map[string]any{"0": map[string]any{"uplinkOnly": 0, "downlinkOnly": 0}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding client config: %w", err)
	}
	return b, nil
}

// Client is a real Xray client process with a local SOCKS5 port.
type Client struct {
	*Process
	// SOCKSAddr is the loopback host:port of the client's SOCKS5 inbound.
	SOCKSAddr string
}

// StartClient starts an Xray client for ob on a free loopback port and
// waits until it listens. It is killed in t.Cleanup.
func StartClient(t testing.TB, bin string, ob Outbound) *Client {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	cfg, err := ClientConfig(addr, ob)
	if err != nil {
		t.Fatalf("writing client config: %v", err)
	}
	return &Client{Process: Start(t, bin, cfg, addr), SOCKSAddr: addr}
}

// StartClients starts one Xray client process for many outbounds: each
// gets its own SOCKS5 inbound on a free loopback port, routed to it alone.
// It is how a test runs hundreds of clients without hundreds of processes.
func StartClients(t testing.TB, bin string, obs []Outbound) []*Client {
	t.Helper()
	var (
		inbounds, outbounds, rules []any
		addrs                      []string
	)
	for i, ob := range obs {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		addrs = append(addrs, addr)
		in, out := fmt.Sprintf("in-%d", i), fmt.Sprintf("out-%d", i)
		inbounds = append(inbounds, map[string]any{
			"tag": in, "listen": "127.0.0.1", "port": mustPort(t, addr), "protocol": "socks",
			"settings": map[string]any{"auth": "noauth", "udp": false},
		})
		o := ob.outbound()
		o["tag"] = out
		outbounds = append(outbounds, o)
		rules = append(rules, map[string]any{"type": "field", "inboundTag": []string{in}, "outboundTag": out})
	}
	cfg, err := json.Marshal(map[string]any{
		"log":       map[string]any{"loglevel": "warning", "access": "none"},
		"inbounds":  inbounds,
		"outbounds": outbounds,
		"routing":   map[string]any{"rules": rules},
		"policy":    map[string]any{"levels": map[string]any{"0": map[string]any{"uplinkOnly": 0, "downlinkOnly": 0}}},
	})
	if err != nil {
		t.Fatalf("writing clients config: %v", err)
	}
	proc := Start(t, bin, cfg, addrs...)
	out := make([]*Client, len(obs))
	for i, addr := range addrs {
		out[i] = &Client{Process: proc, SOCKSAddr: addr}
	}
	return out
}

func mustPort(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// DialContext opens a TCP connection to addr through the tunnel.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d, err := proxy.SOCKS5("tcp", c.SOCKSAddr, nil, &net.Dialer{})
	if err != nil {
		return nil, fmt.Errorf("making socks5 dialer: %w", err)
	}
	conn, err := d.(proxy.ContextDialer).DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("dialing %s through the tunnel: %w", addr, err)
	}
	return conn, nil
}

// Get fetches url through the tunnel over a fresh connection (no
// keep-alive, so every call is a new tunnel connection) and returns the
// body. A non-200 status is an error. ctx bounds the whole exchange.
func (c *Client) Get(ctx context.Context, url string) ([]byte, error) {
	tr := &http.Transport{DialContext: c.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("making request: %w", err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: status %s", url, resp.Status)
	}
	return body, nil
}

// Download is one GET through the tunnel over its own connection, read as
// it comes: Received (every byte the tunnel delivered, headers included)
// grows while it runs, Done is closed when it ends, and Err then says how
// (nil: the whole body arrived and every byte was the stream's).
type Download struct {
	// Request is what was sent through the tunnel.
	Request  string
	received atomic.Int64
	done     chan struct{}
	err      error
	ended    time.Time
	cancel   context.CancelFunc
}

// StartDownload starts fetching path (a /stream path of StartHTTPTarget,
// e.g. "/stream?n=1000&rate=0") from the target at base URL through c over
// one new connection, with HTTP/1.0 so the server closes when done. It
// checks every body byte against StreamByte. Stop it with Cancel (also done
// in t.Cleanup).
func (c *Client) StartDownload(t testing.TB, base, path string) *Download {
	t.Helper()
	return StartDownload(t, c.DialContext, base, path)
}

// DialFunc opens a TCP connection to addr through a tunnel.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// StartDownload is Client.StartDownload through any tunnel dial opens.
func StartDownload(t testing.TB, dial DialFunc, base, path string) *Download {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("target url %q: %v", base, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Download{
		Request: "GET " + path + " HTTP/1.0\r\nHost: " + u.Host + "\r\n\r\n",
		done:    make(chan struct{}), cancel: cancel,
	}
	t.Cleanup(func() { cancel(); <-d.done })
	go func() {
		defer close(d.done)
		d.err = d.run(ctx, dial, u.Host)
		d.ended = time.Now()
	}()
	return d
}

func (d *Download) run(ctx context.Context, dial DialFunc, host string) error {
	conn, err := dial(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, d.Request); err != nil {
		return fmt.Errorf("sending the request: %w", err)
	}
	var (
		head   []byte
		body   int64 // body bytes checked
		length int64 = -1
		total  int64
		buf    = make([]byte, 32<<10)
	)
	for {
		n, rerr := conn.Read(buf)
		total += int64(n)
		d.received.Store(total)
		chunk := buf[:n]
		if length < 0 {
			head = append(head, chunk...)
			i := bytes.Index(head, []byte("\r\n\r\n"))
			if i < 0 {
				chunk = nil
			} else {
				resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(head[:i+4])), nil)
				if err != nil {
					return fmt.Errorf("reading the response head: %w", err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.ContentLength < 0 {
					return fmt.Errorf("response %s, length %d", resp.Status, resp.ContentLength)
				}
				length = resp.ContentLength
				chunk = head[i+4:]
			}
		}
		if !streamMatches(chunk, body) {
			return fmt.Errorf("body bytes from %d on are wrong", body)
		}
		body += int64(len(chunk))
		if rerr != nil {
			if rerr == io.EOF && length >= 0 && body == length {
				return nil
			}
			return fmt.Errorf("after %d of %d body bytes: %w", body, length, rerr)
		}
	}
}

// Received is the number of bytes the tunnel delivered so far, response
// head included.
func (d *Download) Received() int64 { return d.received.Load() }

// Done is closed when the download has ended.
func (d *Download) Done() <-chan struct{} { return d.done }

// Ended is when the download ended; call it after Done.
func (d *Download) Ended() time.Time { return d.ended }

// Err is how the download ended; call it after Done.
func (d *Download) Err() error { return d.err }

// Cancel stops the download and waits for it to end.
func (d *Download) Cancel() {
	d.cancel()
	<-d.done
}

// streamPattern holds the stream's bytes from offset 0 on, long enough to
// compare any read buffer at any offset with one bytes.Equal.
var streamPattern = func() []byte {
	p := make([]byte, 251+64<<10)
	for i := range p {
		p[i] = StreamByte(int64(i))
	}
	return p
}()

// streamMatches tells whether b is the stream's bytes from offset at on.
func streamMatches(b []byte, at int64) bool {
	for len(b) > 0 {
		off := int(at % 251)
		n := min(len(b), len(streamPattern)-off)
		if !bytes.Equal(b[:n], streamPattern[off:off+n]) {
			return false
		}
		b, at = b[n:], at+int64(n)
	}
	return true
}
