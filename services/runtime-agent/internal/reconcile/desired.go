package reconcile

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// member is what the reconciler keeps of a user served on this node: the
// Xray user it is on each protocol, with the fingerprint of its
// credentials. Users the node does not serve are not kept. It is kept
// small (one per user placed on the node): a fixed slot per protocol, not
// maps.
type member struct {
	// slots holds, per protocol (in shared/protocol's order), the Xray
	// user and its credential fingerprint, when the user has credentials
	// for it.
	slots [protocolCount]slot
	// key fingerprints everything above: an update that leaves it alone
	// (usage counters, a rename, a note) changes nothing in Xray.
	key string
}

type slot struct {
	user xray.User
	fp   string
	ok   bool
}

// protocolCount is the number of protocols a member has slots for: every
// protocol of shared/protocol.
const protocolCount = protocol.Count

// slotOf is the index of protocol p in a member's slots.
func slotOf(p user.Protocol) (int, bool) { return protocol.Index(p) }

// memberOf returns what Xray should hold of u, or nil when the node must
// not serve u: its status is not served, or it has no usable credentials.
// Placement is not checked here: the registry resolved it into this
// node's view, which holds only users placed on the node.
func memberOf(u user.User) *member {
	if !u.Status.Served() {
		return nil
	}
	m := &member{}
	held := 0
	for _, p := range u.Protocols {
		i, known := slotOf(p)
		if !known {
			continue
		}
		xu, ok := xray.UserOf(xray.Protocol(p), u.ID, u.Credentials)
		if !ok {
			continue
		}
		if !m.slots[i].ok {
			held++
		}
		m.slots[i] = slot{user: xu, fp: fingerprint(xu), ok: true}
	}
	if held == 0 {
		return nil
	}
	h := sha256.New()
	for i, p := range protocol.Names() {
		if sl := m.slots[i]; sl.ok {
			h.Write([]byte(string(p) + "=" + sl.fp + ";"))
		}
	}
	m.key = hex.EncodeToString(h.Sum(nil)[:8])
	return m
}

// fingerprint identifies the credentials of an Xray user (not its id), so
// that a credential change is seen although Xray lists users by id only.
// It is a truncated SHA-256: the persisted fingerprints reveal nothing.
func fingerprint(u xray.User) string {
	sum := sha256.Sum256([]byte(u.UUID + "\x00" + u.Flow + "\x00" + u.Key + "\x00" + u.Password))
	return hex.EncodeToString(sum[:8])
}

// on returns m's Xray user on the inbound in and its fingerprint, or false
// when m has nothing there: no credentials for the protocol, or ones that
// do not fit the inbound (a Shadowsocks-2022 key whose length does not fit
// the inbound's method).
func (m *member) on(in xray.Inbound) (xray.User, string, bool) {
	i, known := slotOf(user.Protocol(in.Protocol))
	if !known || !m.slots[i].ok || !in.Fits(m.slots[i].user) {
		return xray.User{}, "", false
	}
	return m.slots[i].user, m.slots[i].fp, true
}

// Options of the Xray spec the agent adds to a server's.
type specOptions struct {
	allowPrivate bool
	logLevel     string
}

// xraySpec turns a server's desired state into the Xray spec (without
// users; they are added live) with the API on api. It checks what the
// registry cannot know is wrong for this agent (engine, node) and the
// whole spec (SNI, dest, ports, keys), reporting every broken rule as
// errs.Invalid with the server's own field names.
func xraySpec(s server.Server, node, api string, o specOptions) (xray.Spec, error) {
	var fe []errs.FieldError
	if s.Engine != server.EngineXray {
		fe = append(fe, errs.FieldError{Field: "engine", Rule: "must be " + server.EngineXray})
	}
	if s.Node != node {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "is not this node (" + node + ")"})
	}
	spec := xray.Spec{APIListen: api, LogLevel: o.logLevel, AllowPrivateNetworks: o.allowPrivate}
	for _, in := range s.Inbounds {
		x := xray.Inbound{Tag: in.Tag, Protocol: xray.Protocol(in.Protocol), Listen: in.Listen, Port: in.Port}
		if in.Reality != nil {
			x.Reality = &xray.Reality{
				ServerNames: in.Reality.ServerNames, Dest: in.Reality.Dest,
				PrivateKey: in.Reality.PrivateKey, ShortIDs: in.Reality.ShortIDs,
			}
		}
		if in.Shadowsocks != nil {
			x.Shadowsocks = &xray.Shadowsocks{Method: in.Shadowsocks.Method, Key: in.Shadowsocks.ServerKey}
		}
		spec.Inbounds = append(spec.Inbounds, x)
	}
	err := spec.Validate()
	fe = append(fe, errs.FieldsOf(err)...)
	if len(fe) > 0 {
		return xray.Spec{}, &errs.Error{Class: errs.Invalid, Msg: "invalid server spec", Fields: fe}
	}
	return spec, nil
}

// specKey is what the server's Xray runs: its SpecKey without the
// runtime, which says where it runs, not what (a server that moves keeps
// its config). It labels the workload; the status carries the whole
// SpecKey.
func specKey(s server.Server) string {
	s.Runtime = ""
	return s.SpecKey()
}

// configHash fingerprints an Xray spec as the workload runs it (API
// address and agent options included, users excluded). It labels the
// workload, so an adopted Xray is known to run the wanted config.
func configHash(spec xray.Spec) string {
	spec.Inbounds = append([]xray.Inbound(nil), spec.Inbounds...)
	for i := range spec.Inbounds {
		spec.Inbounds[i].Users = nil
	}
	data, _ := json.Marshal(spec)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// dialAddr is the address to check an inbound's listener on: its own
// listen address, or loopback for the wildcard.
func dialAddr(in xray.Inbound) netip.AddrPort {
	a, err := netip.ParseAddr(in.Listen)
	if err != nil || a.IsUnspecified() {
		a = netip.MustParseAddr("127.0.0.1")
	}
	return netip.AddrPortFrom(a, uint16(in.Port))
}
