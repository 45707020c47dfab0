package xray

import (
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// kind is Xray's part of a protocol (shared/protocol): the settings its
// inbound takes and how they and its users are checked, how it is written
// in Xray's config, and how its users change in a running Xray. One file
// per protocol registers it; a test checks that every protocol served by
// Xray has one.
type kind struct {
	// reality and shadowsocks say which settings its inbound requires
	// (and which it must not have).
	reality, shadowsocks bool
	// settings checks the inbound's settings under p, once they are
	// known to be present; nil when there are none.
	settings func(v *validator, p string, in Inbound)
	// uses names the User fields its credentials are made of (uuid,
	// flow, key, password); the others must be empty. user checks them
	// on in under p.
	uses []string
	user func(v *validator, p string, in Inbound, u User)
	// uniqueUUID: two users of one inbound may not share a UUID.
	uniqueUUID bool
	// render writes the inbound with its users into ic: Xray's protocol
	// name, settings and stream settings.
	render func(in Inbound, ic *inboundConfig) error
	// account is u's account on in for AlterInbound; nil for protocols
	// whose inbounds Xray cannot alter, whose accounts are replaced
	// whole (accountKind names Xray's settings type).
	account     func(in Inbound, u User) proto.Message
	accountKind string
	// batch: from ss2022BatchMin users on, a change replaces the inbound
	// once rather than altering it user by user (replaceSS2022Users).
	batch bool
	// credential is the Xray user (all but its id) made of a user's
	// credentials for the protocol, with the Shadowsocks method they are
	// checked against (none: ""); false when the user has none.
	credential func(c user.Credentials) (u User, method string, ok bool)
	// udp: its inbound also listens on UDP.
	udp bool
	// fits reports whether a user with valid credentials of the protocol
	// can use the inbound in; nil when every one can.
	fits func(in Inbound, u User) bool
}

// kinds holds the kind of every protocol Xray serves.
var kinds = map[Protocol]kind{}

// credentialFields are User's credential fields by name.
func credentialFields(u User) [4][2]string {
	return [4][2]string{{"uuid", u.UUID}, {"flow", u.Flow}, {"key", u.Key}, {"password", u.Password}}
}

// served lists the protocols Xray serves, in shared/protocol's order.
func served() []Protocol {
	var out []Protocol
	for _, name := range protocol.Names() {
		if _, ok := kinds[Protocol(name)]; ok {
			out = append(out, Protocol(name))
		}
	}
	return out
}

// knownProtocols is the rule's list of the protocols Xray serves.
func knownProtocols() string {
	names := make([]string, 0, len(kinds))
	for _, p := range served() {
		names = append(names, string(p))
	}
	return strings.Join(names, ", ")
}

// owners names the protocols whose inbounds take the settings field
// ("reality" or "shadowsocks").
func owners(field string) string {
	var names []string
	for _, p := range served() {
		k := kinds[p]
		if field == "reality" && k.reality || field == "shadowsocks" && k.shadowsocks {
			names = append(names, string(p))
		}
	}
	return strings.Join(names, " or ")
}

// UserOf is the Xray user, with this id, of a user's credentials c on
// protocol p's inbounds, and false when c has none for p or none Xray can
// take (they would fail every batch they are in).
func UserOf(p Protocol, id string, c user.Credentials) (User, bool) {
	k, ok := kinds[p]
	if !ok {
		return User{}, false
	}
	u, method, ok := k.credential(c)
	if !ok {
		return User{}, false
	}
	u.ID = id
	check := Inbound{Protocol: p}
	if method != "" {
		check.Shadowsocks = &Shadowsocks{Method: method}
	}
	if check.ValidateUser(u) != nil {
		return User{}, false
	}
	return u, true
}

// UDP reports whether the inbound also listens on UDP (Shadowsocks).
func (in Inbound) UDP() bool { return kinds[in.Protocol].udp }

// Fits reports whether u, a valid user of in's protocol (UserOf), can use
// the inbound in: a Shadowsocks-2022 key only on inbounds whose method
// has its length.
func (in Inbound) Fits(u User) bool {
	k, ok := kinds[in.Protocol]
	return ok && (k.fits == nil || k.fits(in, u))
}
