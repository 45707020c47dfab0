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
	hostport := net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
	frag := ""
	if p.Name != "" {
		frag = "#" + escape(p.Name)
	}
	switch p.Protocol {
	case user.VLESSReality:
		q := url.Values{}
		q.Set("type", "tcp")
		q.Set("security", "reality")
		q.Set("encryption", "none")
		q.Set("flow", p.Flow)
		q.Set("sni", p.SNI)
		q.Set("pbk", p.PublicKey)
		q.Set("sid", p.ShortID)
		q.Set("fp", p.Fingerprint)
		// A fixed order reads better than url.Values' sorted one.
		var b strings.Builder
		for i, k := range []string{"type", "security", "encryption", "flow", "sni", "pbk", "sid", "fp"} {
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k + "=" + escape(q.Get(k)))
		}
		return "vless://" + escape(p.UUID) + "@" + hostport + "?" + b.String() + frag
	case user.Shadowsocks2022:
		// SIP002 for 2022 methods: userinfo is method:password
		// percent-encoded, not base64.
		return "ss://" + escape(p.Method) + ":" + escape(p.Password) + "@" + hostport + frag
	case user.SOCKS5:
		return "socks5://" + escape(p.Username) + ":" + escape(p.Password) + "@" + hostport + frag
	case user.HTTP:
		return "http://" + escape(p.Username) + ":" + escape(p.Password) + "@" + hostport + frag
	}
	return ""
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
	pass, _ := u.User.Password()
	switch u.Scheme {
	case "vless":
		q := u.Query()
		if q.Get("security") != "reality" {
			return Params{}, fmt.Errorf("vless link with security %q: %w", q.Get("security"), ErrUnsupported)
		}
		p.Protocol = user.VLESSReality
		p.UUID = u.User.Username()
		p.Flow, p.SNI, p.PublicKey, p.ShortID, p.Fingerprint = q.Get("flow"), q.Get("sni"), q.Get("pbk"), q.Get("sid"), q.Get("fp")
	case "ss":
		if _, ok := u.User.Password(); !ok {
			return Params{}, fmt.Errorf("ss link without method:password (base64 userinfo): %w", ErrUnsupported)
		}
		p.Protocol = user.Shadowsocks2022
		p.Method, p.Password = u.User.Username(), pass
	case "socks5", "http":
		p.Protocol = user.SOCKS5
		if u.Scheme == "http" {
			p.Protocol = user.HTTP
		}
		p.Username, p.Password = u.User.Username(), pass
	default:
		return Params{}, fmt.Errorf("scheme %q: %w", u.Scheme, ErrUnsupported)
	}
	return p, nil
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
	c := u.Credentials
	switch in.Protocol {
	case user.VLESSReality:
		r := in.Reality
		switch {
		case c.VLESS == nil:
			return p, "user has no vless credentials"
		case r == nil || r.PublicKey == "" || len(r.ServerNames) == 0:
			return p, "inbound has no reality public key or server name"
		}
		p.UUID, p.Flow = c.VLESS.UUID, c.VLESS.Flow
		p.SNI, p.PublicKey = r.ServerNames[0], r.PublicKey
		if len(r.ShortIDs) > 0 {
			p.ShortID = r.ShortIDs[0]
		}
		p.Fingerprint = r.Fingerprint
		if p.Fingerprint == "" {
			p.Fingerprint = DefaultFingerprint
		}
	case user.Shadowsocks2022:
		ss := in.Shadowsocks
		switch {
		case c.Shadowsocks == nil:
			return p, "user has no shadowsocks credentials"
		case ss == nil || ss.ServerKey == "":
			return p, "inbound has no shadowsocks method or server key"
		case ss.Method == user.SS2022ChaCha20Poly1305:
			return p, "inbound method " + ss.Method + " does not support several users"
		}
		want, ok := user.SS2022KeyLen(ss.Method)
		have, _ := user.SS2022KeyLen(c.Shadowsocks.Method)
		if !ok || want != have {
			return p, fmt.Sprintf("user key is for %s, inbound uses %s", c.Shadowsocks.Method, ss.Method)
		}
		p.Method, p.Password = ss.Method, ss.ServerKey+":"+c.Shadowsocks.Key
	case user.SOCKS5, user.HTTP:
		acct := c.SOCKS5
		if in.Protocol == user.HTTP {
			acct = c.HTTP
		}
		if acct == nil {
			return p, "user has no " + string(in.Protocol) + " credentials"
		}
		p.Username, p.Password = acct.Username, acct.Password
	default:
		return p, "unknown protocol"
	}
	return p, ""
}
