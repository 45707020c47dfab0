package wgconf

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Conf is a wg-quick configuration file: what a user imports into a
// WireGuard app (or scans as a QR code) to reach a server.
type Conf struct {
	Interface Interface
	Peers     []Peer
}

// Interface is the [Interface] section: the user's own side.
type Interface struct {
	PrivateKey Key
	// Addresses are the user's tunnel addresses (a /32 and maybe a /128).
	Addresses []netip.Prefix
	// DNS are the resolvers the app sets while the tunnel is up.
	DNS []netip.Addr
	// MTU of the tunnel; 0 leaves the app's default.
	MTU int
	// ListenPort; 0 (a client) lets the system choose.
	ListenPort int
}

// Peer is one [Peer] section: for a user, the server.
type Peer struct {
	PublicKey Key
	// PresharedKey, when not zero, adds a symmetric key to the handshake.
	PresharedKey Key
	// Endpoint is host:port of the server.
	Endpoint string
	// AllowedIPs are the destinations routed into the tunnel.
	AllowedIPs []netip.Prefix
	// PersistentKeepalive in seconds; 0 is off.
	PersistentKeepalive int
}

// Rules broken by a bad `.conf`, as field errors name them.
const (
	RuleRequired  = "is required"
	RuleAddress   = "must be IP/prefix addresses separated by commas"
	RuleIP        = "must be IP addresses separated by commas"
	RuleEndpoint  = "must be host:port with a port from 1 to 65535"
	RuleMTU       = "must be 0 or from 576 to 65535"
	RulePort      = "must be from 0 to 65535"
	RuleKeepalive = "must be from 0 to 65535 seconds"
	RuleSection   = "must be [Interface] or [Peer], with [Interface] once"
	RuleLine      = "must be a section header, `Key = Value`, a comment or empty"
	RuleKnownKey  = "must be a key of its section (Interface: PrivateKey, Address, DNS, MTU, ListenPort; Peer: PublicKey, PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive)"
	RuleOnce      = "must appear once per section"
)

// Validate checks every field, returning one errs.Invalid error that names
// each broken field and its rule.
func (c Conf) Validate() error {
	var fe []errs.FieldError
	add := func(field, rule string) { fe = append(fe, errs.FieldError{Field: field, Rule: rule}) }
	if c.Interface.PrivateKey.IsZero() {
		add("Interface.PrivateKey", RuleRequired)
	}
	if len(c.Interface.Addresses) == 0 {
		add("Interface.Address", RuleRequired)
	}
	for _, p := range c.Interface.Addresses {
		if !p.IsValid() {
			add("Interface.Address", RuleAddress)
		}
	}
	for _, a := range c.Interface.DNS {
		if !a.IsValid() {
			add("Interface.DNS", RuleIP)
		}
	}
	if c.Interface.MTU != 0 && (c.Interface.MTU < 576 || c.Interface.MTU > 65535) {
		add("Interface.MTU", RuleMTU)
	}
	if c.Interface.ListenPort < 0 || c.Interface.ListenPort > 65535 {
		add("Interface.ListenPort", RulePort)
	}
	if len(c.Peers) == 0 {
		add("Peer", RuleRequired)
	}
	for i, p := range c.Peers {
		f := fmt.Sprintf("Peer[%d].", i)
		if err := p.PublicKey.ValidatePublic(f + "PublicKey"); err != nil {
			fe = append(fe, errs.FieldsOf(err)...)
		}
		if p.Endpoint != "" && !validEndpoint(p.Endpoint) {
			add(f+"Endpoint", RuleEndpoint)
		}
		if len(p.AllowedIPs) == 0 {
			add(f+"AllowedIPs", RuleRequired)
		}
		for _, a := range p.AllowedIPs {
			if !a.IsValid() {
				add(f+"AllowedIPs", RuleAddress)
			}
		}
		if p.PersistentKeepalive < 0 || p.PersistentKeepalive > 65535 {
			add(f+"PersistentKeepalive", RuleKeepalive)
		}
	}
	return errs.Fields(fe...)
}

func validEndpoint(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, " \t,") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// Render validates c and writes it as a wg-quick `.conf`.
func (c Conf) Render() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("rendering a wireguard .conf: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("[Interface]\n")
	fmt.Fprintf(&b, "PrivateKey = %s\n", c.Interface.PrivateKey)
	fmt.Fprintf(&b, "Address = %s\n", join(c.Interface.Addresses))
	if len(c.Interface.DNS) > 0 {
		fmt.Fprintf(&b, "DNS = %s\n", join(c.Interface.DNS))
	}
	if c.Interface.MTU != 0 {
		fmt.Fprintf(&b, "MTU = %d\n", c.Interface.MTU)
	}
	if c.Interface.ListenPort != 0 {
		fmt.Fprintf(&b, "ListenPort = %d\n", c.Interface.ListenPort)
	}
	for _, p := range c.Peers {
		b.WriteString("\n[Peer]\n")
		fmt.Fprintf(&b, "PublicKey = %s\n", p.PublicKey)
		if !p.PresharedKey.IsZero() {
			fmt.Fprintf(&b, "PresharedKey = %s\n", p.PresharedKey)
		}
		if p.Endpoint != "" {
			fmt.Fprintf(&b, "Endpoint = %s\n", p.Endpoint)
		}
		fmt.Fprintf(&b, "AllowedIPs = %s\n", join(p.AllowedIPs))
		if p.PersistentKeepalive != 0 {
			fmt.Fprintf(&b, "PersistentKeepalive = %d\n", p.PersistentKeepalive)
		}
	}
	return b.Bytes(), nil
}

func join[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}

// Parse reads a wg-quick `.conf` (keys are case-insensitive, `#` starts a
// comment, list values are comma-separated and may repeat) and validates
// it. Keys wg-quick runs as commands (PostUp and the like) are refused, as
// is anything else this package does not know.
func Parse(data []byte) (Conf, error) {
	var c Conf
	var peer *Peer
	inInterface := false
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		at := "line " + strconv.Itoa(n)
		if strings.HasPrefix(line, "[") {
			switch strings.ToLower(line) {
			case "[interface]":
				if inInterface || peer != nil || !c.Interface.PrivateKey.IsZero() || len(c.Interface.Addresses) > 0 {
					return Conf{}, errs.Field(at, RuleSection)
				}
				inInterface = true
			case "[peer]":
				c.Peers = append(c.Peers, Peer{})
				peer = &c.Peers[len(c.Peers)-1]
				inInterface = false
			default:
				return Conf{}, errs.Field(at, RuleSection)
			}
			clear(seen)
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return Conf{}, errs.Field(at, RuleLine)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		field := at + ": " + key
		var err error
		switch {
		case inInterface:
			err = c.Interface.set(key, value, field, seen)
		case peer != nil:
			err = peer.set(key, value, field, seen)
		default:
			err = errs.Field(at, RuleSection)
		}
		if err != nil {
			return Conf{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Conf{}, fmt.Errorf("reading a wireguard .conf: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Conf{}, err
	}
	return c, nil
}

// once refuses a single-valued key seen twice in a section.
func once(key, field string, seen map[string]bool) error {
	if seen[key] {
		return errs.Field(field, RuleOnce)
	}
	seen[key] = true
	return nil
}

func (in *Interface) set(key, value, field string, seen map[string]bool) error {
	var err error
	switch key {
	case "privatekey":
		if err = once(key, field, seen); err == nil {
			in.PrivateKey, err = ParseKey(field, value)
		}
	case "address":
		var ps []netip.Prefix
		if ps, err = prefixes(value, field); err == nil {
			in.Addresses = append(in.Addresses, ps...)
		}
	case "dns":
		for _, s := range strings.Split(value, ",") {
			a, perr := netip.ParseAddr(strings.TrimSpace(s))
			if perr != nil {
				return errs.Field(field, RuleIP)
			}
			in.DNS = append(in.DNS, a)
		}
	case "mtu":
		if err = once(key, field, seen); err == nil {
			in.MTU, err = number(value, field, RuleMTU)
		}
	case "listenport":
		if err = once(key, field, seen); err == nil {
			in.ListenPort, err = number(value, field, RulePort)
		}
	default:
		err = errs.Field(field, RuleKnownKey)
	}
	return err
}

func (p *Peer) set(key, value, field string, seen map[string]bool) error {
	var err error
	if key != "allowedips" {
		if err := once(key, field, seen); err != nil {
			return err
		}
	}
	switch key {
	case "publickey":
		p.PublicKey, err = ParsePublicKey(field, value)
	case "presharedkey":
		p.PresharedKey, err = ParseKey(field, value)
	case "endpoint":
		if !validEndpoint(value) {
			return errs.Field(field, RuleEndpoint)
		}
		p.Endpoint = value
	case "allowedips":
		var ps []netip.Prefix
		if ps, err = prefixes(value, field); err == nil {
			p.AllowedIPs = append(p.AllowedIPs, ps...)
		}
	case "persistentkeepalive":
		if strings.EqualFold(value, "off") {
			p.PersistentKeepalive = 0
			return nil
		}
		p.PersistentKeepalive, err = number(value, field, RuleKeepalive)
	default:
		err = errs.Field(field, RuleKnownKey)
	}
	return err
}

func prefixes(value, field string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(value, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, errs.Field(field, RuleAddress)
		}
		out = append(out, p)
	}
	return out, nil
}

func number(value, field, rule string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < 0 || n > 65535 {
		return 0, errs.Field(field, rule)
	}
	return n, nil
}
