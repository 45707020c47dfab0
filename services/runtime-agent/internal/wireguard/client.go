package wireguard

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// BatchSize is how many peers one `set=1` carries: the device holds its
// configuration lock for a whole request, so large changes go in batches
// that let a concurrent `get=1` (the usage reader) in between.
const BatchSize = 500

// Client talks to one device's UAPI socket. It holds no connection: each
// call dials, so a restarted device is picked up by the next call.
type Client struct {
	socket string
}

// New returns a client of the device listening on the unix socket path.
func New(socket string) *Client { return &Client{socket: socket} }

// Config is the device's own configuration.
type Config struct {
	PrivateKey Key
	// ListenPort is the UDP port; 0 lets the device choose (read it back
	// with Get).
	ListenPort int
}

// Peer is one peer to add or change.
type Peer struct {
	PublicKey Key
	// PresharedKey, when not zero, is mixed into the handshake.
	PresharedKey Key
	// AllowedIPs replace the peer's current ones: the user's /32 (and
	// /128) on a server.
	AllowedIPs []netip.Prefix
	// Endpoint is optional on a server (learnt from the peer's packets).
	Endpoint netip.AddrPort
	// PersistentKeepalive in seconds; 0 is off.
	PersistentKeepalive int
}

// Validate checks p, naming fields under prefix.
func (p Peer) Validate(prefix string) error {
	var fe []errs.FieldError
	if err := p.PublicKey.ValidatePublic(prefix + "public_key"); err != nil {
		fe = append(fe, errs.FieldsOf(err)...)
	}
	for _, a := range p.AllowedIPs {
		if !a.IsValid() {
			fe = append(fe, errs.FieldError{Field: prefix + "allowed_ips", Rule: "must be IP/prefix"})
		}
	}
	if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535 {
		fe = append(fe, errs.FieldError{Field: prefix + "persistent_keepalive", Rule: "must be from 0 to 65535 seconds"})
	}
	return errs.Fields(fe...)
}

// Configure sets the device's private key and listen port, leaving peers
// as they are.
func (c *Client) Configure(ctx context.Context, cfg Config) error {
	if cfg.PrivateKey.IsZero() {
		return errs.Field("private_key", "is required")
	}
	if cfg.ListenPort < 0 || cfg.ListenPort > 65535 {
		return errs.Field("listen_port", "must be from 0 to 65535")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "private_key=%s\nlisten_port=%d\n", cfg.PrivateKey.Hex(), cfg.ListenPort)
	if err := c.set(ctx, b.String()); err != nil {
		return fmt.Errorf("configuring wireguard device: %w", err)
	}
	return nil
}

// AddPeers adds peers, or changes those the device has (their allowed IPs
// are replaced, not merged), live, in batches of BatchSize. Every peer is
// validated before any is sent.
func (c *Client) AddPeers(ctx context.Context, peers []Peer) error {
	for i, p := range peers {
		if err := p.Validate("peers[" + strconv.Itoa(i) + "]."); err != nil {
			return err
		}
	}
	for start := 0; start < len(peers); start += BatchSize {
		var b strings.Builder
		for _, p := range peers[start:min(start+BatchSize, len(peers))] {
			writePeer(&b, p)
		}
		if err := c.set(ctx, b.String()); err != nil {
			return fmt.Errorf("adding wireguard peers %d-%d of %d: %w", start, min(start+BatchSize, len(peers))-1, len(peers), err)
		}
	}
	return nil
}

func writePeer(b *strings.Builder, p Peer) {
	fmt.Fprintf(b, "public_key=%s\n", p.PublicKey.Hex())
	fmt.Fprintf(b, "preshared_key=%s\n", p.PresharedKey.Hex())
	if p.Endpoint.IsValid() {
		fmt.Fprintf(b, "endpoint=%s\n", p.Endpoint)
	}
	fmt.Fprintf(b, "persistent_keepalive_interval=%d\n", p.PersistentKeepalive)
	b.WriteString("replace_allowed_ips=true\n")
	for _, a := range p.AllowedIPs {
		fmt.Fprintf(b, "allowed_ip=%s\n", a)
	}
}

// RemovePeers removes peers live and returns their final counters, so that
// no byte they moved escapes the usage meter. It works in three steps per
// batch: the peers' allowed IPs are emptied, which cuts their traffic at
// once (the device routes nothing to them and drops what they send); their
// counters are read, now frozen for every byte delivered; then they are
// removed, which erases their session keys, so their next packets are
// dropped before decryption. Keys the device does not hold are ignored.
// The caller adds the final counters to the usage reading it takes at the
// removal (the peers are absent from every later one), so the meter counts
// their last bytes exactly once.
func (c *Client) RemovePeers(ctx context.Context, keys []Key) (map[Key]Traffic, error) {
	final := make(map[Key]Traffic, len(keys))
	for start := 0; start < len(keys); start += BatchSize {
		batch := keys[start:min(start+BatchSize, len(keys))]
		var cut, remove strings.Builder
		for _, k := range batch {
			fmt.Fprintf(&cut, "public_key=%s\nupdate_only=true\nreplace_allowed_ips=true\n", k.Hex())
			fmt.Fprintf(&remove, "public_key=%s\nremove=true\n", k.Hex())
		}
		if err := c.set(ctx, cut.String()); err != nil {
			return nil, fmt.Errorf("cutting wireguard peers: %w", err)
		}
		d, err := c.Get(ctx)
		if err != nil {
			return nil, err
		}
		want := make(map[Key]bool, len(batch))
		for _, k := range batch {
			want[k] = true
		}
		for _, p := range d.Peers {
			if want[p.PublicKey] {
				final[p.PublicKey] = p.Traffic
			}
		}
		if err := c.set(ctx, remove.String()); err != nil {
			return nil, fmt.Errorf("removing wireguard peers: %w", err)
		}
	}
	return final, nil
}

// Get reads the device: its public key, port and every peer with counters.
func (c *Client) Get(ctx context.Context) (Device, error) {
	var d Device
	err := c.do(ctx, "get=1\n\n", func(r *bufio.Reader) error {
		var err error
		d, err = ParseGet(r)
		return err
	})
	if err != nil {
		return Device{}, fmt.Errorf("reading wireguard device: %w", err)
	}
	return d, nil
}

// UserTraffic reads every peer's counters WITHOUT resetting them, keyed by
// the user id users maps its public key to (peers not in users are left
// out), as the usage meter reads Xray's.
func (c *Client) UserTraffic(ctx context.Context, users map[Key]string) (map[string]Traffic, error) {
	d, err := c.Get(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]Traffic, len(d.Peers))
	for _, p := range d.Peers {
		if id, ok := users[p.PublicKey]; ok {
			out[id] = p.Traffic
		}
	}
	return out, nil
}

func (c *Client) set(ctx context.Context, body string) error {
	return c.do(ctx, "set=1\n"+body+"\n", func(r *bufio.Reader) error {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("reading set reply: %w", err)
		}
		key, value, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if !ok || key != "errno" {
			return protocolError("set reply %q", line)
		}
		return errnoError(value)
	})
}

// do sends one request and hands the reply to read, under ctx's deadline
// (30 s when it has none).
func (c *Client) do(ctx context.Context, req string, read func(*bufio.Reader) error) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.socket)
	if err != nil {
		return &errs.Error{Class: errs.Unavailable, Msg: "dialing wireguard uapi " + c.socket, Err: err}
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Second)
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write([]byte(req)); err != nil {
		return &errs.Error{Class: errs.Unavailable, Msg: "writing to wireguard uapi", Err: err}
	}
	return read(bufio.NewReaderSize(conn, 64*1024))
}
