// Package server is the contract of a deployed VPN server: the value of a
// server's entry in the servers bucket (desired state, written by the
// registry) and of its status in the server_status bucket (observed state,
// written by the agent of its node under "<node>.<server>").
// Client links are built only from these records: a server's public host
// comes from its applied Status, never from a placeholder.
package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

// EngineXray is the only engine so far.
const EngineXray = "xray"

// Runtimes a server may name.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeProcess    = "process"
)

// Runtimes lists the runtimes a server may name.
var Runtimes = []string{RuntimeDocker, RuntimeContainerd, RuntimeProcess}

// RuntimeRule is the rule a runtime field breaks when it names no runtime.
const RuntimeRule = "must be docker, containerd or process"

// Server is one server on one node.
type Server struct {
	ID   string `json:"id"`
	Node string `json:"node"`
	Name string `json:"name"`
	// Engine runs the inbounds ("xray").
	Engine string `json:"engine"`
	// Runtime is where the node runs the server: docker, containerd or
	// process. Empty inherits: a server already running stays on the
	// runtime it runs on, a new one starts on the node's default.
	Runtime  string    `json:"runtime,omitempty"`
	Inbounds []Inbound `json:"inbounds"`
	// Status is written by the node's agent; zero until it has tried.
	Status    Status    `json:"status,omitzero"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Revision is the KV revision the record was read at (not stored).
	Revision uint64 `json:"revision,omitempty"`
}

// Inbound is one user-facing listener of a server.
type Inbound struct {
	Tag      string        `json:"tag"`
	Protocol user.Protocol `json:"protocol"`
	Port     int           `json:"port"`
	// Listen is the bind address; empty is every interface.
	Listen string `json:"listen,omitempty"`
	// Reality is set for vless-reality inbounds.
	Reality *Reality `json:"reality,omitempty"`
	// Shadowsocks is set for shadowsocks-2022 inbounds.
	Shadowsocks *Shadowsocks `json:"shadowsocks,omitempty"`
}

// Reality is a VLESS inbound's REALITY settings.
type Reality struct {
	// ServerNames are the SNIs clients may present; links use the first.
	ServerNames []string `json:"server_names"`
	// Dest is the TLS 1.3 site REALITY borrows its handshake from.
	Dest string `json:"dest"`
	// PrivateKey and PublicKey are the X25519 pair, base64url without
	// padding; links carry the public key.
	PrivateKey string `json:"private_key"`
	PublicKey  string `json:"public_key"`
	// ShortIDs are hex short ids; links use the first.
	ShortIDs []string `json:"short_ids"`
	// Fingerprint is the uTLS fingerprint clients imitate (default chrome).
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Shadowsocks is a Shadowsocks-2022 inbound's method and server key
// (standard base64 of user.SS2022KeyLen(Method) bytes).
type Shadowsocks struct {
	Method    string `json:"method"`
	ServerKey string `json:"server_key"`
}

// State is how far the agent got with a server.
type State string

// The states.
const (
	StatePending State = "pending"
	// StateApplied: the node's Xray runs the current spec and holds
	// exactly the server's desired users (UsersApplied == UsersDesired,
	// UsersExtra == 0).
	StateApplied State = "applied"
	// StatePartial: the node's Xray runs the current spec but does not
	// hold exactly the desired users (being applied, or stuck: Reason and
	// Code say why); UsersApplied of UsersDesired say how far it got. It
	// serves the users it holds.
	StatePartial State = "partial"
	StateFailed  State = "failed"
)

// Serving reports whether the node runs the server's current spec, so
// links to it are handed out: applied, or partial while users are
// applied.
func (st Status) Serving() bool {
	return st.State == StateApplied || st.State == StatePartial
}

// UsersBehind is how many users the server's Xray lacks or holds in
// excess of its desired ones; 0 when applied, or when the status came
// from an agent that did not count users.
func (st Status) UsersBehind() int {
	return max(st.UsersDesired-st.UsersApplied, 0) + st.UsersExtra
}

// Status is what the node's agent reports about a server.
type Status struct {
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Code is the machine-readable code (shared/errs) of the error in
	// Reason, when it has one (e.g. message_too_large).
	Code string `json:"code,omitempty"`
	// UsersDesired counts the users the server must serve (placed on its
	// node, served, with credentials for one of its inbounds);
	// UsersApplied those of them its Xray holds, with their current
	// credentials, on every inbound they belong on; UsersExtra the users
	// its Xray holds that it must not (their removal failed). Counted by
	// the agent from what it applied, checked against Xray's own lists at
	// every drift check. All zero in statuses of agents that did not
	// count.
	UsersDesired int `json:"users_desired,omitempty"`
	UsersApplied int `json:"users_applied,omitempty"`
	UsersExtra   int `json:"users_extra,omitempty"`
	// PublicHost is the host name or address clients actually reach the
	// server at.
	PublicHost string `json:"public_host,omitempty"`
	// AppliedRevision is the server revision the agent applied.
	AppliedRevision uint64 `json:"applied_revision,omitempty"`
	// Runtime is the runtime the server's Xray runs on.
	Runtime string `json:"runtime,omitempty"`
	// Spec is the SpecKey of the server the agent applied: a status is
	// current only while it equals the desired server's SpecKey.
	Spec string    `json:"spec,omitempty"`
	Time time.Time `json:"time,omitzero"`
}

// SpecKey fingerprints what an agent runs for a server: node, engine,
// runtime (when named) and inbounds with their keys, not the name or the
// status. Two records with the same key need no new apply.
func (s Server) SpecKey() string {
	data, _ := json.Marshal(struct {
		Node     string    `json:"node"`
		Engine   string    `json:"engine"`
		Runtime  string    `json:"runtime,omitempty"`
		Inbounds []Inbound `json:"inbounds"`
	}{s.Node, s.Engine, s.Runtime, s.Inbounds})
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Redacted returns s without its inbounds' secrets (REALITY private keys,
// Shadowsocks server keys), for events and logs. It copies the inbounds, so
// s is left as it was.
func (s Server) Redacted() Server {
	ins := make([]Inbound, len(s.Inbounds))
	for i, in := range s.Inbounds {
		if in.Reality != nil {
			r := *in.Reality
			r.PrivateKey = ""
			in.Reality = &r
		}
		if in.Shadowsocks != nil {
			ss := *in.Shadowsocks
			ss.ServerKey = ""
			in.Shadowsocks = &ss
		}
		ins[i] = in
	}
	s.Inbounds = ins
	return s
}

// Event is the payload of every server.* event published by the registry
// (subject.ServerEvent(id)). The server is redacted: events are widely
// readable; agents read the keys from the servers bucket.
type Event struct {
	Server Server `json:"server"`
	// SpecChanged is set on updates that changed what the agent runs (the
	// inbounds), as opposed to a rename.
	SpecChanged bool `json:"spec_changed,omitempty"`
}
