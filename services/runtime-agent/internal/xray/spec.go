package xray

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Protocol names an inbound kind the agent can run. The values are the
// project's names, not Xray's protocol names.
type Protocol string

// The protocols an Inbound may have.
const (
	VLESSReality    Protocol = "vless-reality"
	Shadowsocks2022 Protocol = "shadowsocks-2022"
	SOCKS5          Protocol = "socks5"
	HTTP            Protocol = "http"
)

// FlowVision is the only VLESS flow this package configures: XTLS Vision,
// which REALITY clients use.
const FlowVision = "xtls-rprx-vision"

// APITag is the tag of the loopback API inbound and of Xray's API itself;
// no user inbound may take it.
const APITag = "api"

// placeholderID names the account that keeps an inbound from running with no
// user at all: an HTTP or SOCKS5 inbound with no account lets anyone through,
// and a Shadowsocks-2022 inbound with no user falls back to single-user mode,
// where the server key alone (which every user's link carries) is enough and
// users can no longer be added live. Its credentials are random and unknown;
// listings leave it out, and no user may take its id.
const placeholderID = "vpnfleet-placeholder"

// Spec is the desired Xray server of one node: everything BuildConfig needs
// to write its config. The JSON form is the project's snake_case.
type Spec struct {
	// APIListen is the loopback host:port of the gRPC API the agent drives.
	APIListen string `json:"api_listen"`
	// LogLevel is Xray's log level: debug, info, warning (the default),
	// error or none. Access logs are always off: they would record every
	// user's destinations.
	LogLevel string `json:"log_level,omitempty"`
	// AllowPrivateNetworks lets users reach loopback, private and link-local
	// addresses through the server. Off by default so that a VPN user cannot
	// probe the host's own network; tests turn it on to reach local servers.
	AllowPrivateNetworks bool `json:"allow_private_networks,omitempty"`
	// Inbounds are the user-facing listeners.
	Inbounds []Inbound `json:"inbounds"`
}

// Inbound is one user-facing listener.
type Inbound struct {
	// Tag names the inbound in Xray; API calls address inbounds by tag.
	Tag      string   `json:"tag"`
	Protocol Protocol `json:"protocol"`
	// Listen is the IP address to bind; empty means all IPv4 interfaces.
	Listen string `json:"listen,omitempty"`
	Port   int    `json:"port"`
	// Reality is required for VLESSReality and forbidden otherwise.
	Reality *Reality `json:"reality,omitempty"`
	// Shadowsocks is required for Shadowsocks2022 and Outline and
	// forbidden otherwise.
	Shadowsocks *Shadowsocks `json:"shadowsocks,omitempty"`
	// Users present when Xray starts; later changes go through Client.
	Users []User `json:"users,omitempty"`
}

// Reality holds a VLESS inbound's REALITY settings.
type Reality struct {
	// ServerNames are the SNIs clients may present; each must be a DNS name
	// the Dest serves.
	ServerNames []string `json:"server_names"`
	// Dest is the host:port of the real TLS 1.3 site REALITY borrows its
	// handshake from and forwards unauthenticated clients to.
	Dest string `json:"dest"`
	// PrivateKey is the X25519 private key, base64url without padding.
	PrivateKey string `json:"private_key"`
	// ShortIDs are the short ids clients may present: hex, even length, at
	// most 16 digits; "" is allowed and means the empty id.
	ShortIDs []string `json:"short_ids"`
}

// Shadowsocks holds a Shadowsocks inbound's server settings.
type Shadowsocks struct {
	// Method is one of the SS2022* methods supporting several users, or
	// for Outline a classic AEAD method.
	Method string `json:"method"`
	// Key is the server PSK, standard base64 of the method's key length;
	// empty for Outline.
	Key string `json:"key"`
}

// User is one user's credentials on one inbound. Which fields count depends
// on the inbound's protocol; the others must be empty.
type User struct {
	// ID identifies the user in Xray (its "email") and in usage counters;
	// on SOCKS5 and HTTP inbounds it is also the user name. Lowercase
	// letters, digits and . _ @ -, at most 128 characters: a UUID fits.
	ID string `json:"id"`
	// UUID is the VLESS credential. It must be unique on the inbound: Xray
	// looks VLESS users up by UUID and lets a second user with the same UUID
	// silently take over the first one's.
	UUID string `json:"uuid,omitempty"`
	// Flow is the VLESS flow; empty means FlowVision, the only one allowed.
	Flow string `json:"flow,omitempty"`
	// Key is the Shadowsocks-2022 user key (uPSK), standard base64 of the
	// inbound method's key length.
	Key string `json:"key,omitempty"`
	// Password is the SOCKS5, HTTP or Outline password.
	Password string `json:"password,omitempty"`
}

var (
	tagRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	userIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._@-]{0,127}$`)
	uuidRe   = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	labelRe  = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// Validate checks the whole spec and reports every broken rule at once as an
// errs.Invalid error whose fields name the offending paths, e.g.
// "inbounds[0].reality.dest".
func (s Spec) Validate() error {
	var v validator
	s.validate(&v)
	return v.err()
}

func (s Spec) validate(v *validator) {
	apiPort := 0
	if ap, err := netip.ParseAddrPort(s.APIListen); err != nil {
		v.add("api_listen", "must be a loopback ip:port")
	} else if !ap.Addr().IsLoopback() {
		v.add("api_listen", "must be a loopback address: the API has no authentication")
	} else if ap.Port() == 0 {
		v.add("api_listen", "port must be 1-65535")
	} else {
		apiPort = int(ap.Port())
	}
	switch s.LogLevel {
	case "", "debug", "info", "warning", "error", "none":
	default:
		v.add("log_level", "must be one of debug, info, warning, error, none")
	}
	if len(s.Inbounds) == 0 {
		v.add("inbounds", "at least one inbound is required")
	}
	tags := map[string]bool{}
	ports := map[int]string{}
	if apiPort != 0 {
		ports[apiPort] = "api_listen"
	}
	for i, in := range s.Inbounds {
		p := fmt.Sprintf("inbounds[%d]", i)
		in.validate(v, p)
		if in.Tag != "" {
			if tags[in.Tag] {
				v.add(p+".tag", "duplicate tag "+strconv.Quote(in.Tag))
			}
			tags[in.Tag] = true
		}
		// Conservative: two inbounds never share a port, whatever their
		// listen addresses, so that "0.0.0.0" and a specific IP cannot clash.
		if in.Port >= 1 && in.Port <= 65535 {
			if other, ok := ports[in.Port]; ok {
				v.add(p+".port", fmt.Sprintf("port %d is already used by %s", in.Port, other))
			} else {
				ports[in.Port] = p
			}
		}
	}
}

// Validate checks one inbound on its own, with field paths relative to it.
func (in Inbound) Validate() error {
	var v validator
	in.validate(&v, "")
	return v.err()
}

func (in Inbound) validate(v *validator, p string) {
	switch {
	case in.Tag == APITag:
		v.add(join(p, "tag"), `"api" is reserved for the API inbound`)
	case !tagRe.MatchString(in.Tag):
		v.add(join(p, "tag"), "must be 1-64 letters, digits, . _ - starting with a letter or digit")
	}
	if in.Listen != "" {
		if _, err := netip.ParseAddr(in.Listen); err != nil {
			v.add(join(p, "listen"), "must be an IP address")
		}
	}
	if in.Port < 1 || in.Port > 65535 {
		v.add(join(p, "port"), "must be 1-65535")
	}
	k, ok := kinds[in.Protocol]
	if !ok {
		v.add(join(p, "protocol"), "must be one of "+knownProtocols())
		return
	}
	for _, set := range []struct {
		field     string
		need, has bool
	}{
		{"reality", k.reality, in.Reality != nil},
		{"shadowsocks", k.shadowsocks, in.Shadowsocks != nil},
	} {
		switch {
		case set.need && !set.has:
			v.add(join(p, set.field), "is required for "+string(in.Protocol))
		case !set.need && set.has:
			v.add(join(p, set.field), "is only for "+owners(set.field))
		}
	}
	if k.settings != nil && (!k.reality || in.Reality != nil) && (!k.shadowsocks || in.Shadowsocks != nil) {
		k.settings(v, p, in)
	}
	ids := map[string]bool{}
	uuids := map[string]bool{}
	for i, u := range in.Users {
		up := join(p, fmt.Sprintf("users[%d]", i))
		in.validateUser(v, up, u)
		if ids[u.ID] {
			v.add(join(up, "id"), "duplicate user id")
		}
		ids[u.ID] = true
		if k.uniqueUUID && u.UUID != "" {
			if uuids[u.UUID] {
				v.add(join(up, "uuid"), "duplicate uuid")
			}
			uuids[u.UUID] = true
		}
	}
}

// ValidateUser checks u against this inbound's protocol (and method, for
// Shadowsocks-2022), with field paths relative to the user.
func (in Inbound) ValidateUser(u User) error {
	var v validator
	in.validateUser(&v, "", u)
	return v.err()
}

func (in Inbound) validateUser(v *validator, p string, u User) {
	switch {
	case u.ID == placeholderID:
		v.add(join(p, "id"), "is reserved")
	case !userIDRe.MatchString(u.ID):
		v.add(join(p, "id"), "must be 1-128 lowercase letters, digits, . _ @ - starting with a letter or digit")
	}
	k, ok := kinds[in.Protocol]
	if !ok {
		return
	}
	k.user(v, p, in, u)
	for _, f := range credentialFields(u) {
		if f[1] != "" && !slices.Contains(k.uses, f[0]) {
			v.add(join(p, f[0]), "must be empty for "+string(in.Protocol))
		}
	}
}

func (r Reality) validate(v *validator, p string) {
	if len(r.ServerNames) == 0 {
		v.add(join(p, "server_names"), "at least one server name is required")
	}
	for i, sn := range r.ServerNames {
		if rule := checkSNI(sn); rule != "" {
			v.add(join(p, fmt.Sprintf("server_names[%d]", i)), rule)
		}
	}
	if rule := checkHostPort(r.Dest); rule != "" {
		v.add(join(p, "dest"), rule)
	}
	if _, err := DecodeX25519Key(r.PrivateKey); err != nil {
		v.add(join(p, "private_key"), err.Error())
	}
	if len(r.ShortIDs) == 0 {
		v.add(join(p, "short_ids"), `at least one short id is required ("" allowed)`)
	}
	for i, sid := range r.ShortIDs {
		if len(sid) > 16 || len(sid)%2 != 0 || strings.Trim(sid, "0123456789abcdef") != "" {
			v.add(join(p, fmt.Sprintf("short_ids[%d]", i)), "must be lowercase hex of even length, at most 16 digits")
		}
	}
}

// checkSNI returns the rule a TLS server name breaks, or "". A server name
// is a DNS host name (RFC 6066 forbids IP literals), lowercase here so that
// it compares as Xray and clients compare it.
func checkSNI(sn string) string {
	const rule = "must be a lowercase DNS name such as www.example.com (no IP, no wildcard, no port)"
	if sn == "" || len(sn) > 253 || strings.HasSuffix(sn, ".") {
		return rule
	}
	if _, err := netip.ParseAddr(sn); err == nil {
		return rule
	}
	labels := strings.Split(sn, ".")
	for _, l := range labels {
		if !labelRe.MatchString(l) {
			return rule
		}
	}
	// An all-numeric last label would be read as part of an IPv4 address.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return rule
	}
	return ""
}

// checkHostPort returns the rule a host:port breaks, or "".
func checkHostPort(hp string) string {
	const rule = "must be host:port with a DNS name or IP and a port 1-65535"
	host, port, err := net.SplitHostPort(hp)
	if err != nil || host == "" {
		return rule
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return rule
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if checkSNI(strings.ToLower(host)) != "" {
		return rule
	}
	return ""
}

// validator collects field errors so that one call reports them all.
type validator struct{ fields []errs.FieldError }

func (v *validator) add(field, rule string) {
	v.fields = append(v.fields, errs.FieldError{Field: field, Rule: rule})
}

func (v *validator) err() error { return errs.Fields(v.fields...) }

func join(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}
