// Package links builds what VPN clients import: a user's links for each
// server inbound that serves it (vless://, ss:// in SIP002 form, socks5://,
// http://), subscription bodies (base64 link lists, Clash/mihomo YAML,
// sing-box JSON) and QR codes. Links come only from real server records:
// an inbound gives a link when its server is applied and reports the
// public host it serves on; otherwise the user gets a reason instead.
//
// Every link parses back (Parse) into the same Params it was built from.
package links

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// DefaultFingerprint is the uTLS fingerprint links ask for when the server
// names none.
const DefaultFingerprint = "chrome"

// ErrUnsupported is returned by Parse for a scheme or form it does not
// read.
var ErrUnsupported = errors.New("unsupported link")

// Params are the fields of one link. Which are set depends on Protocol.
type Params struct {
	Protocol user.Protocol
	Host     string
	Port     int
	// Name is the label clients show (the URL fragment).
	Name string

	// VLESS+REALITY.
	UUID        string
	Flow        string
	SNI         string
	PublicKey   string
	ShortID     string
	Fingerprint string

	// Shadowsocks-2022: Password is "<server key>:<user key>".
	Method string

	// SOCKS5, HTTP and Shadowsocks.
	Username string
	Password string
}

// Build renders p as a URL.
func Build(p Params) string {
	k, ok := kinds[p.Protocol]
	if !ok {
		return ""
	}
	frag := ""
	if p.Name != "" {
		frag = "#" + escape(p.Name)
	}
	return k.build(p, net.JoinHostPort(p.Host, strconv.Itoa(p.Port)), frag)
}

// escape percent-encodes everything but RFC 3986 unreserved characters, so
// no client can read a '+' as a space or a ':' as a separator.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// Parse reads a link built by Build (and the same forms from other tools).
func Parse(link string) (Params, error) {
	u, err := url.Parse(link)
	if err != nil {
		return Params{}, errs.Wrap(errs.Invalid, err, "parsing link")
	}
	p := Params{Name: u.Fragment, Host: u.Hostname()}
	port, err := strconv.Atoi(u.Port())
	if err != nil || port < 1 || port > 65535 {
		return Params{}, errs.New(errs.Invalid, "link %s: port must be 1-65535", u.Scheme)
	}
	p.Port = port
	if u.User == nil {
		return Params{}, errs.New(errs.Invalid, "link %s: no user info", u.Scheme)
	}
	for _, proto := range protocol.Names() {
		k := kinds[proto]
		if k.scheme != u.Scheme {
			continue
		}
		p.Protocol = proto
		if err := k.parse(u, &p); err != nil {
			if errors.Is(err, errNotMine) {
				continue
			}
			return Params{}, err
		}
		return p, nil
	}
	return Params{}, fmt.Errorf("scheme %q: %w", u.Scheme, ErrUnsupported)
}

// Healthy is a set of node ids; a nil Healthy means every node.
type Healthy map[string]bool

// HealthyOf turns a request's node list into a set: nil stays nil (every
// node), an empty list is the empty set (no node).
func HealthyOf(nodes []string) Healthy {
	if nodes == nil {
		return nil
	}
	h := make(Healthy, len(nodes))
	for _, n := range nodes {
		h[n] = true
	}
	return h
}

func (h Healthy) has(node string) bool { return h == nil || h[node] }

// ForUser returns the links of u on every inbound of servers whose node
// serves u and is healthy, and, for each of u's protocols, the reasons it
// has no link where it has none. groups maps a node id to its groups.
func ForUser(u user.User, servers []server.Server, groups map[string][]string, healthy Healthy) ([]user.Link, []user.NoLink) {
	links := []user.Link{}
	var missing []user.NoLink
	srvs := slices.Clone(servers)
	slices.SortFunc(srvs, func(a, b server.Server) int { return strings.Compare(a.Node+"/"+a.ID, b.Node+"/"+b.ID) })
	for _, proto := range u.Protocols {
		found := false
		for _, s := range srvs {
			if !u.Placement.Serves(s.Node, groups[s.Node]) {
				continue
			}
			for _, in := range s.Inbounds {
				if in.Protocol != proto {
					continue
				}
				found = true
				no := func(reason string) {
					missing = append(missing, user.NoLink{Server: s.ID, Node: s.Node, Protocol: proto, Reason: reason})
				}
				switch {
				case !healthy.has(s.Node):
					no("node is not healthy")
					continue
				case s.Status.State == server.StateFailed:
					no("server failed to apply: " + s.Status.Reason)
					continue
				case !s.Status.Serving():
					no("server is not applied yet")
					continue
				case s.Status.PublicHost == "":
					no("server reports no public host")
					continue
				}
				p, reason := params(u, s, in)
				if reason != "" {
					no(reason)
					continue
				}
				links = append(links, user.Link{Server: s.ID, Node: s.Node, Inbound: in.Tag, Protocol: proto, URL: Build(p)})
			}
		}
		if !found {
			missing = append(missing, user.NoLink{Protocol: proto, Reason: "no server on the user's nodes offers this protocol"})
		}
	}
	return links, missing
}

// params builds the link fields of u on inbound in of s, or says why not.
func params(u user.User, s server.Server, in server.Inbound) (Params, string) {
	p := Params{Protocol: in.Protocol, Host: s.Status.PublicHost, Port: in.Port, Name: u.Name + "@" + s.Name}
	if s.Name == "" {
		p.Name = u.Name + "@" + s.Node
	}
	if in.Port < 1 || in.Port > 65535 {
		return p, "inbound has no valid port"
	}
	k, ok := kinds[in.Protocol]
	if !ok {
		return p, "unknown protocol"
	}
	return p, k.params(u.Credentials, in, &p)
}
