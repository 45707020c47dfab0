// Package protocol is the seam every layer describes a VPN protocol
// through. One Descriptor per protocol, listed once (All), holds the facts
// every module shares: the protocol's name, the engine that serves it on a
// node, whether new users get it by default, where its credential sits in
// a user's record, which inbound request fields belong to it and which
// Shadowsocks methods its inbounds take. Each layer keeps its own part of a
// protocol (credential generation and links in services/users, rendering
// for the engine in the agent) in a table keyed by the same name, and a
// test in that layer checks that every protocol listed here has its part.
//
// Adding a protocol is one file here (its Descriptor, added to All), one
// file per layer, and tests.
package protocol

import (
	"slices"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Descriptor is what every module knows of one protocol.
type Descriptor struct {
	// Name is the protocol's name in users' protocol lists and server
	// inbounds.
	Name user.Protocol
	// Engine is the engine that serves inbounds of this protocol on a
	// node (server.EngineXray, ...).
	Engine string
	// Default is set for protocols a new user gets when its create names
	// none (user.Protocols lists them).
	Default bool
	// Has reports whether c holds a credential for this protocol; Clear
	// removes it.
	Has   func(c user.Credentials) bool
	Clear func(c *user.Credentials)
	// RequestFields are the fields of server.InboundRequest (JSON names)
	// an inbound of this protocol may set, beyond tag, protocol, port and
	// listen. Any other is refused with "is only for <protocol>".
	RequestFields []string
	// Methods are the Shadowsocks methods its inbounds take (the first is
	// the default), with the rule a method outside them breaks; empty for
	// protocols without a method.
	Methods    []string
	MethodRule string
}

// All lists every protocol in a stable order: the defaults first, in the
// order of user.Protocols, then the others in the order they were added.
var All = []Descriptor{vlessReality, shadowsocks2022, socks5, httpProxy, outline}

// Get returns the descriptor of p, and false for an unknown protocol.
func Get(p user.Protocol) (Descriptor, bool) {
	i := slices.IndexFunc(All, func(d Descriptor) bool { return d.Name == p })
	if i < 0 {
		return Descriptor{}, false
	}
	return All[i], true
}

// Known reports whether p is a protocol listed in All.
func Known(p user.Protocol) bool {
	_, ok := Get(p)
	return ok
}

// Names lists the names of every protocol, in All's order.
func Names() []user.Protocol {
	out := make([]user.Protocol, len(All))
	for i, d := range All {
		out[i] = d.Name
	}
	return out
}

// List is the names of every protocol joined by ", ", for rules such as
// "must be one of " + List().
func List() string {
	names := make([]string, len(All))
	for i, d := range All {
		names[i] = string(d.Name)
	}
	return strings.Join(names, ", ")
}

// Index is the position of p in All (slots kept per protocol use it), and
// false for an unknown protocol.
func Index(p user.Protocol) (int, bool) {
	i := slices.IndexFunc(All, func(d Descriptor) bool { return d.Name == p })
	return i, i >= 0
}

// Count is len(All) as a constant, for arrays with one slot per protocol;
// a test checks that they agree.
const Count = 5

// Clear removes the credentials of every protocol not in keep.
func Clear(c *user.Credentials, keep []user.Protocol) {
	for _, d := range All {
		if !slices.Contains(keep, d.Name) {
			d.Clear(c)
		}
	}
}
