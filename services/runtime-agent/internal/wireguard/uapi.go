// Package wireguard is the agent's client of a WireGuard device (the
// vpn-wireguard workload, or any wireguard-go or kernel device exposing the
// same interface): it configures the device and adds, changes and removes
// peers live over the cross-platform UAPI configuration protocol
// (`set=1` / `get=1` on a unix socket), and reads each peer's transfer
// counters and last handshake, never resetting them, for the usage meter.
package wireguard

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/wgconf"
)

// Key is a WireGuard key.
type Key = wgconf.Key

// Device is what a `get=1` reports.
type Device struct {
	// PublicKey of the device's private key (zero when it has none). The
	// private key itself is not kept.
	PublicKey  Key
	ListenPort int
	Peers      []PeerStatus
}

// Traffic is one peer's cumulative bytes since it was added: Uplink is
// what the device received from it (the user's upload), Downlink what it
// sent to it. Both count whole WireGuard datagrams as the device counts
// them (payload plus 32 bytes of header and tag per transport message,
// handshakes included), not inner IP packets.
type Traffic struct {
	Uplink   int64
	Downlink int64
}

// PeerStatus is one peer as the device reports it.
type PeerStatus struct {
	PublicKey           Key
	HasPresharedKey     bool
	Endpoint            netip.AddrPort
	AllowedIPs          []netip.Prefix
	PersistentKeepalive int
	// LastHandshake is zero when the peer never completed one.
	LastHandshake time.Time
	Traffic       Traffic
}

// maxGetReply bounds a `get=1` reply (about 400 bytes a peer; a million
// peers fit).
const maxGetReply = 1 << 30

// ParseGet reads a `get=1` reply up to and including its `errno=` line
// (wireguard-go's Device.IpcGet returns the reply without it: append
// "errno=0\n"). A non-zero errno is returned as an error.
func ParseGet(r io.Reader) (Device, error) {
	var d Device
	var peer *PeerStatus
	var hsSec, hsNsec int64
	finish := func() {
		if peer != nil && (hsSec != 0 || hsNsec != 0) {
			peer.LastHandshake = time.Unix(hsSec, hsNsec)
		}
		hsSec, hsNsec = 0, 0
	}
	sc := bufio.NewScanner(io.LimitReader(r, maxGetReply))
	sc.Buffer(make([]byte, 4096), 64*1024)
	for sc.Scan() {
		line := sc.Text()
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Device{}, protocolError("line %q has no '='", line)
		}
		if key == "errno" {
			finish()
			return d, errnoError(value)
		}
		if key == "public_key" {
			finish()
			k, err := parseHexKey(value)
			if err != nil {
				return Device{}, err
			}
			d.Peers = append(d.Peers, PeerStatus{PublicKey: k})
			peer = &d.Peers[len(d.Peers)-1]
			continue
		}
		var err error
		if peer == nil {
			err = d.set(key, value)
		} else {
			err = peer.set(key, value, &hsSec, &hsNsec)
		}
		if err != nil {
			return Device{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Device{}, fmt.Errorf("reading a wireguard get reply: %w", err)
	}
	return Device{}, protocolError("reply ended without errno")
}

func (d *Device) set(key, value string) error {
	switch key {
	case "private_key":
		k, err := parseHexKey(value)
		if err != nil {
			return err
		}
		if !k.IsZero() {
			d.PublicKey = k.PublicKey()
		}
	case "listen_port":
		n, err := strconv.ParseUint(value, 10, 16)
		if err != nil {
			return protocolError("listen_port %q", value)
		}
		d.ListenPort = int(n)
	case "fwmark":
	default:
		return protocolError("unknown device key %q", key)
	}
	return nil
}

func (p *PeerStatus) set(key, value string, hsSec, hsNsec *int64) error {
	var err error
	switch key {
	case "preshared_key":
		var k Key
		k, err = parseHexKey(value)
		p.HasPresharedKey = !k.IsZero()
	case "protocol_version":
		if value != "1" {
			return protocolError("protocol_version %q", value)
		}
	case "endpoint":
		p.Endpoint, err = netip.ParseAddrPort(value)
	case "allowed_ip":
		var a netip.Prefix
		a, err = netip.ParsePrefix(value)
		p.AllowedIPs = append(p.AllowedIPs, a)
	case "persistent_keepalive_interval":
		var n uint64
		n, err = strconv.ParseUint(value, 10, 16)
		p.PersistentKeepalive = int(n)
	case "last_handshake_time_sec":
		*hsSec, err = strconv.ParseInt(value, 10, 64)
	case "last_handshake_time_nsec":
		*hsNsec, err = strconv.ParseInt(value, 10, 64)
		if err == nil && (*hsNsec < 0 || *hsNsec >= 1e9) {
			err = fmt.Errorf("out of range")
		}
	case "rx_bytes":
		p.Traffic.Uplink, err = counter(value)
	case "tx_bytes":
		p.Traffic.Downlink, err = counter(value)
	default:
		return protocolError("unknown peer key %q", key)
	}
	if err != nil {
		return protocolError("%s=%q: %v", key, value, err)
	}
	return nil
}

func counter(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && n < 0 {
		err = fmt.Errorf("negative")
	}
	return n, err
}

func parseHexKey(s string) (Key, error) {
	var k Key
	if len(s) != 2*wgconf.KeyLen {
		return Key{}, protocolError("key %q is not 64 hex digits", s)
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return Key{}, protocolError("key %q is not 64 hex digits", s)
	}
	return k, nil
}

// Errnos the UAPI reports (negated), as wireguard-go's ipc package names
// them.
const (
	errnoInvalid   = 22 // EINVAL: the request breaks a rule
	errnoPortInUse = 98 // EADDRINUSE: listen_port is taken
)

// errnoError maps a reply's errno value to a classified error (nil for 0).
func errnoError(value string) error {
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return protocolError("errno %q", value)
	}
	if n < 0 {
		n = -n
	}
	switch n {
	case 0:
		return nil
	case errnoInvalid:
		return &errs.Error{Class: errs.Invalid, Msg: "wireguard device refused the configuration (EINVAL)"}
	case errnoPortInUse:
		return &errs.Error{Class: errs.Conflict, Msg: "wireguard listen port is in use (EADDRINUSE)"}
	default:
		return &errs.Error{Class: errs.Internal, Msg: fmt.Sprintf("wireguard device failed (errno %d)", n)}
	}
}

func protocolError(format string, args ...any) error {
	return &errs.Error{Class: errs.Internal, Msg: "wireguard uapi: " + fmt.Sprintf(format, args...)}
}
