package servers

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Rules, as reported in field errors.
const (
	NodeRule       = "must be 1-128 characters of A-Z a-z 0-9 _ -"
	NameRule       = "must be 1-64 characters of A-Z a-z 0-9 _ . -"
	IDRule         = "must be a server id (UUIDv4)"
	TagRule        = "must be 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
	PortRule       = "must be 1-65535"
	ListenRule     = "must be an IP address"
	DestRule       = "must be host:port with a DNS name or IP address and a port 1-65535"
	ServerNameRule = "must be a DNS name such as www.example.com (no IP, wildcard or port)"
	ShortIDRule    = "must be hex of even length, at most 16 digits"
	ChaChaRule     = "2022-blake3-chacha20-poly1305 cannot serve several users in Xray, and every server here is multi-user; use 2022-blake3-aes-128-gcm or 2022-blake3-aes-256-gcm"
	MethodRule     = "must be 2022-blake3-aes-128-gcm or 2022-blake3-aes-256-gcm"
)

// Limits on list input.
const (
	MaxInbounds    = 32
	maxServerNames = 16
	maxShortIDs    = 16
)

// APITag is the tag of the loopback API inbound the agent adds to every
// Xray config; no user inbound may take it.
const APITag = "api"

// DefaultFingerprint is the uTLS fingerprint REALITY clients imitate when
// the request names none.
const DefaultFingerprint = "chrome"

// Fingerprints are the uTLS fingerprints Xray clients accept.
var Fingerprints = []string{"chrome", "firefox", "safari", "ios", "android", "edge", "360", "qq", "random", "randomized"}

// DefaultMethod is the Shadowsocks-2022 method of an inbound that names
// none; it matches the default of users' keys.
const DefaultMethod = credentials.DefaultMethod

var (
	nameRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	tagRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// ValidID reports whether id is a canonical lowercase UUIDv4, the only form
// server ids take.
func ValidID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && len(id) == 36 && u.String() == id && u.Version() == 4
}

// NameKey is how names compare: unique per node regardless of case.
func NameKey(name string) string { return strings.ToLower(name) }

// fields collects field errors.
type fields []errs.FieldError

func (f *fields) add(field, rule string) { *f = append(*f, errs.FieldError{Field: field, Rule: rule}) }

func (f fields) err() error { return errs.Fields(f...) }

// New validates a create request and builds the server it describes, with
// id, fresh keys and status pending, as of now. Every rejected field is
// reported at once. Whether the name and ports are free on the node is the
// registry's to check: New sees no other server.
func New(req server.CreateRequest, id string, now time.Time) (server.Server, error) {
	var fe fields
	if !subject.ValidToken(req.Node) {
		fe.add("node", NodeRule)
	}
	if !nameRe.MatchString(req.Name) {
		fe.add("name", NameRule)
	}
	if req.Runtime != "" && !slices.Contains(server.Runtimes, req.Runtime) {
		fe.add("runtime", server.RuntimeRule)
	}
	ins := normInbounds(&fe, req.Inbounds)
	if err := fe.err(); err != nil {
		return server.Server{}, err
	}
	inbounds, err := withKeys(ins, nil)
	if err != nil {
		return server.Server{}, err
	}
	return server.Server{
		ID:        id,
		Node:      req.Node,
		Name:      req.Name,
		Engine:    server.EngineXray,
		Runtime:   req.Runtime,
		Inbounds:  inbounds,
		Status:    server.Status{State: server.StatePending},
		CreatedAt: now,
		UpdatedAt: now,
	}, nil
}

// CheckUpdate validates an update request on its own, before the server is
// read: every rejected field is reported.
func CheckUpdate(req server.UpdateRequest) error {
	var fe fields
	if !ValidID(req.ID) {
		fe.add("id", IDRule)
	}
	if req.Name != nil && !nameRe.MatchString(*req.Name) {
		fe.add("name", NameRule)
	}
	if req.Runtime != nil && *req.Runtime != "" && !slices.Contains(server.Runtimes, *req.Runtime) {
		fe.add("runtime", server.RuntimeRule)
	}
	if req.Inbounds != nil {
		normInbounds(&fe, *req.Inbounds)
	}
	return fe.err()
}

// Change says what an update did.
type Change struct {
	// Changed is false when the update left the server as it was.
	Changed bool
	// SpecChanged is set when the inbounds or the runtime changed: what
	// the agent runs, or where.
	SpecChanged bool
}

// Apply applies a checked update to s as of now. Inbounds with the tag and
// protocol of one s had keep its keys and short ids unless the request
// gives new ones (and a Shadowsocks key only while the method is the
// same). A change of the inbounds sets the status back to pending; a rename
// alone leaves it, since the agent has nothing to do for it. Apply replaces
// slices rather than changing them, so s may share them with another copy.
func Apply(s *server.Server, req server.UpdateRequest) (Change, error) {
	if err := CheckUpdate(req); err != nil {
		return Change{}, err
	}
	var c Change
	if req.Name != nil && *req.Name != s.Name {
		s.Name = *req.Name
		c.Changed = true
	}
	if req.Runtime != nil && *req.Runtime != s.Runtime {
		s.Runtime = *req.Runtime
		s.Status.State = server.StatePending
		s.Status.Reason = ""
		c.Changed, c.SpecChanged = true, true
	}
	if req.Inbounds != nil {
		var fe fields
		ins := normInbounds(&fe, *req.Inbounds)
		if err := fe.err(); err != nil {
			return Change{}, err
		}
		next, err := withKeys(ins, s.Inbounds)
		if err != nil {
			return Change{}, err
		}
		if !sameInbounds(s.Inbounds, next) {
			s.Inbounds = next
			s.Status.State = server.StatePending
			s.Status.Reason = ""
			c.Changed, c.SpecChanged = true, true
		}
	}
	return c, nil
}

// sameInbounds compares two inbound lists field by field.
func sameInbounds(a, b []server.Inbound) bool {
	return slices.EqualFunc(a, b, func(x, y server.Inbound) bool {
		if x.Tag != y.Tag || x.Protocol != y.Protocol || x.Port != y.Port || x.Listen != y.Listen {
			return false
		}
		switch {
		case (x.Reality == nil) != (y.Reality == nil), (x.Shadowsocks == nil) != (y.Shadowsocks == nil):
			return false
		case x.Reality != nil:
			r, q := x.Reality, y.Reality
			if r.Dest != q.Dest || r.PrivateKey != q.PrivateKey || r.PublicKey != q.PublicKey || r.Fingerprint != q.Fingerprint ||
				!slices.Equal(r.ServerNames, q.ServerNames) || !slices.Equal(r.ShortIDs, q.ShortIDs) {
				return false
			}
		}
		return x.Shadowsocks == nil || *x.Shadowsocks == *y.Shadowsocks
	})
}

// normInbounds checks inbound requests and returns them with defaults
// filled in and names lowercased. Field paths are "inbounds[i].<field>".
func normInbounds(fe *fields, reqs []server.InboundRequest) []server.InboundRequest {
	switch {
	case len(reqs) == 0:
		fe.add("inbounds", "must list at least one inbound")
		return nil
	case len(reqs) > MaxInbounds:
		fe.add("inbounds", fmt.Sprintf("must list at most %d inbounds", MaxInbounds))
		return nil
	}
	out := make([]server.InboundRequest, len(reqs))
	tags := map[string]int{}
	ports := map[int]int{}
	for i, in := range reqs {
		p := fmt.Sprintf("inbounds[%d]", i)
		in = normInbound(fe, p, in)
		if j, ok := tags[in.Tag]; ok && in.Tag != "" {
			fe.add(p+".tag", fmt.Sprintf("tag %q is also used by inbounds[%d]", in.Tag, j))
		} else {
			tags[in.Tag] = i
		}
		if j, ok := ports[in.Port]; ok {
			fe.add(p+".port", fmt.Sprintf("port %d is also used by inbounds[%d]", in.Port, j))
		} else if in.Port >= 1 && in.Port <= 65535 {
			ports[in.Port] = i
		}
		out[i] = in
	}
	return out
}

func normInbound(fe *fields, p string, in server.InboundRequest) server.InboundRequest {
	d, known := protocol.Get(in.Protocol)
	if !known {
		fe.add(p+".protocol", "must be one of "+protocol.List())
	}
	if in.Tag == "" && known {
		in.Tag = string(in.Protocol)
	}
	switch {
	case in.Tag == APITag:
		fe.add(p+".tag", `"api" is reserved for the agent's API inbound`)
	case !tagRe.MatchString(in.Tag) && (known || in.Tag != ""):
		fe.add(p+".tag", TagRule)
	}
	if in.Port < 1 || in.Port > 65535 {
		fe.add(p+".port", PortRule)
	}
	if in.Listen != "" {
		if _, err := netip.ParseAddr(in.Listen); err != nil {
			fe.add(p+".listen", ListenRule)
		}
	}
	for _, f := range requestFields(in) {
		if known && !slices.Contains(d.RequestFields, f) {
			fe.add(p+"."+f, "is only for "+owners(f))
		}
	}
	if kind := inboundKinds[in.Protocol]; kind.norm != nil {
		in = kind.norm(fe, p, in)
	}
	return in
}

// splitDest splits a REALITY dest into its lowercased host and whether the
// host is an IP address; ok is false when it is not host:port with a DNS
// name or IP and a port 1-65535.
func splitDest(dest string) (host string, isIP, ok bool) {
	host, port, err := net.SplitHostPort(dest)
	if err != nil || host == "" {
		return "", false, false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", false, false
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", false, false
		}
		return a.String(), true, true
	}
	host = strings.ToLower(host)
	return host, false, validDNSName(host)
}

// validDNSName reports whether s is a lowercase DNS host name usable as a
// TLS server name: labels of a-z 0-9 -, no IP literal, no trailing dot, a
// last label that is not all digits (it would read as an IPv4 address).
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasSuffix(s, ".") {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if !labelRe.MatchString(l) {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}

// withKeys turns checked inbound requests into inbounds, generating the
// keys a request does not give and an inbound of prev with the same tag and
// protocol does not already have.
func withKeys(reqs []server.InboundRequest, prev []server.Inbound) ([]server.Inbound, error) {
	out := make([]server.Inbound, len(reqs))
	for i, in := range reqs {
		var old *server.Inbound
		for j := range prev {
			if prev[j].Tag == in.Tag && prev[j].Protocol == in.Protocol {
				old = &prev[j]
				break
			}
		}
		ib := server.Inbound{Tag: in.Tag, Protocol: in.Protocol, Port: in.Port, Listen: in.Listen}
		if kind := inboundKinds[in.Protocol]; kind.keys != nil {
			if err := kind.keys(&ib, in, old); err != nil {
				return nil, err
			}
		}
		out[i] = ib
	}
	return out, nil
}
