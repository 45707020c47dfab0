// Package user is the contract of the user registry (services/users): the
// user record kept in the users bucket, the request and response types of
// the vpn.users.* endpoints, and the payload of user.* events. It holds
// types and the small predicates every reader needs to interpret them the
// same way (which node serves a user, how long a Shadowsocks key is); the
// rules that change users live in services/users.
package user

import (
	"maps"
	"slices"
	"time"
)

// Status is where a user stands. Only active users are served by agents.
type Status string

// The statuses.
const (
	// StatusActive users are served.
	StatusActive Status = "active"
	// StatusDisabled users were switched off by an operator.
	StatusDisabled Status = "disabled"
	// StatusLimited users reached their traffic limit; the next periodic
	// reset (LimitReset) makes them active again.
	StatusLimited Status = "limited"
	// StatusExpired users passed ExpiresAt.
	StatusExpired Status = "expired"
	// StatusOnHold users are served, but their clock has not started: the
	// first traffic makes them active and sets ExpiresAt to first use plus
	// OnHoldDays.
	StatusOnHold Status = "on_hold"
)

// Statuses lists every status, in a stable order.
var Statuses = []Status{StatusActive, StatusDisabled, StatusLimited, StatusExpired, StatusOnHold}

// Served reports whether agents should let a user in this status connect.
func (s Status) Served() bool { return s == StatusActive || s == StatusOnHold }

// Protocol names a kind of inbound a user can connect through. The values
// are the project's names, shared with server inbounds.
type Protocol string

// The protocols.
const (
	VLESSReality    Protocol = "vless-reality"
	Shadowsocks2022 Protocol = "shadowsocks-2022"
	SOCKS5          Protocol = "socks5"
	HTTP            Protocol = "http"
)

// Protocols lists the protocols a new user gets when its create names
// none, in a stable order. Every protocol, these and those a user must ask
// for, is listed by shared/protocol.
var Protocols = []Protocol{VLESSReality, Shadowsocks2022, SOCKS5, HTTP}

// FlowVision is the VLESS flow REALITY clients use (XTLS Vision).
const FlowVision = "xtls-rprx-vision"

// The Shadowsocks-2022 methods.
const (
	SS2022AES128GCM        = "2022-blake3-aes-128-gcm"
	SS2022AES256GCM        = "2022-blake3-aes-256-gcm"
	SS2022ChaCha20Poly1305 = "2022-blake3-chacha20-poly1305"
)

// SS2022KeyLen returns the length in bytes of a Shadowsocks-2022 key (the
// server key and every user key) for method, and false for an unknown
// method.
func SS2022KeyLen(method string) (int, bool) {
	switch method {
	case SS2022AES128GCM:
		return 16, true
	case SS2022AES256GCM, SS2022ChaCha20Poly1305:
		return 32, true
	}
	return 0, false
}

// LimitReset is how often the traffic counters restart (and a limited user
// becomes active again).
type LimitReset string

// The reset strategies.
const (
	ResetNone  LimitReset = "none"
	ResetDay   LimitReset = "day"
	ResetWeek  LimitReset = "week"
	ResetMonth LimitReset = "month"
	ResetYear  LimitReset = "year"
)

// LimitResets lists every strategy.
var LimitResets = []LimitReset{ResetNone, ResetDay, ResetWeek, ResetMonth, ResetYear}

// User is the value of a user's entry in the users bucket: the desired
// state every agent converges to (through its node's view, see
// subject.BucketNodeViews). Revision is the KV revision the record was read at; it is not
// stored, and updates pass it back as their expected revision.
type User struct {
	// ID is a UUIDv4, fixed for life.
	ID string `json:"id"`
	// Name is unique case-insensitively: 3-32 of [A-Za-z0-9_-].
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Note  string `json:"note,omitempty"`

	Status Status `json:"status"`
	// OnHoldDays is how long an on_hold user stays valid after first use.
	OnHoldDays int `json:"on_hold_days,omitempty"`

	// Protocols the user may connect with; Credentials holds one set per
	// protocol.
	Protocols   []Protocol  `json:"protocols"`
	Credentials Credentials `json:"credentials"`

	// TrafficLimitBytes caps UsedUp+UsedDown; 0 is unlimited.
	TrafficLimitBytes int64      `json:"traffic_limit_bytes"`
	LimitReset        LimitReset `json:"limit_reset"`
	// ExpiresAt is when the user expires; zero is never.
	ExpiresAt time.Time `json:"expires_at,omitzero"`

	// Usage is not part of the record in the users bucket: the counters
	// are observed state, kept in the usage bucket by the registry's usage
	// consumer. Readers of the users service get them filled in.
	Usage     Usage     `json:"usage,omitzero"`
	Placement Placement `json:"placement"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Revision  uint64    `json:"revision"`

	// TraceParent is the W3C traceparent of the request that last changed
	// the record. KV entries carry no headers, so this is how an agent
	// applying the change continues the request's trace. Not desired state.
	TraceParent string `json:"trace_parent,omitempty"`
}

// Has reports whether u may connect with p.
func (u User) Has(p Protocol) bool { return slices.Contains(u.Protocols, p) }

// Redacted returns u without its credentials, for events and logs that
// must not carry secrets.
func (u User) Redacted() User {
	u.Credentials = Credentials{}
	return u
}

// Credentials holds a user's secrets, one set per protocol it has.
type Credentials struct {
	VLESS       *VLESS       `json:"vless,omitempty"`
	Shadowsocks *Shadowsocks `json:"shadowsocks,omitempty"`
	SOCKS5      *Proxy       `json:"socks5,omitempty"`
	HTTP        *Proxy       `json:"http,omitempty"`
	// Keys holds the credentials of the protocols added on the protocol
	// seam (shared/protocol) after the four above, by protocol name;
	// what a Key's fields hold is that protocol's to say. Read and
	// change it with Key, SetKey and DropKey, which never change a map
	// another copy of the credentials shares.
	Keys map[Protocol]Key `json:"keys,omitempty"`
}

// Key is one protocol's credential in Credentials.Keys.
type Key struct {
	// Password is a shared secret (outline: the Shadowsocks password).
	Password string `json:"password,omitempty"`
	// PrivateKey and PublicKey are a key pair; Address an address
	// allocated to the user.
	PrivateKey string `json:"private_key,omitempty"`
	PublicKey  string `json:"public_key,omitempty"`
	Address    string `json:"address,omitempty"`
}

// Key returns the credential of protocol p kept in Keys.
func (c Credentials) Key(p Protocol) (Key, bool) {
	k, ok := c.Keys[p]
	return k, ok
}

// SetKey sets the credential of protocol p in a copy of Keys.
func (c *Credentials) SetKey(p Protocol, k Key) {
	keys := make(map[Protocol]Key, len(c.Keys)+1)
	maps.Copy(keys, c.Keys)
	keys[p] = k
	c.Keys = keys
}

// DropKey removes the credential of protocol p from a copy of Keys.
func (c *Credentials) DropKey(p Protocol) {
	if _, ok := c.Keys[p]; !ok {
		return
	}
	keys := maps.Clone(c.Keys)
	delete(keys, p)
	if len(keys) == 0 {
		keys = nil
	}
	c.Keys = keys
}

// VLESS is a VLESS+REALITY credential.
type VLESS struct {
	UUID string `json:"uuid"`
	Flow string `json:"flow"`
}

// Shadowsocks is a Shadowsocks-2022 user key (uPSK): standard base64 of
// SS2022KeyLen(Method) random bytes. It works on servers whose method has
// the same key length.
type Shadowsocks struct {
	Method string `json:"method"`
	Key    string `json:"key"`
}

// Proxy is a SOCKS5 or HTTP proxy account.
type Proxy struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Usage holds a user's traffic counters. UsedUp and UsedDown count since
// the last reset and are what the limit applies to; the lifetime totals
// never reset.
type Usage struct {
	UsedUp       int64     `json:"used_up"`
	UsedDown     int64     `json:"used_down"`
	LifetimeUp   int64     `json:"lifetime_up"`
	LifetimeDown int64     `json:"lifetime_down"`
	LastSeenAt   time.Time `json:"last_seen_at,omitzero"`
	FirstUsedAt  time.Time `json:"first_used_at,omitzero"`
	// ResetAt is when the counters last restarted (creation, a periodic
	// reset or an operator's reset).
	ResetAt time.Time `json:"reset_at,omitzero"`
	// Windows is, per node, the highest usage window already counted for
	// this user: a record is applied to a user at most once, even when it
	// is delivered again after a crash.
	Windows map[string]uint64 `json:"windows,omitempty"`
}

// Used is the traffic that counts against the limit.
func (u Usage) Used() int64 { return u.UsedUp + u.UsedDown }

// Placement says which nodes serve a user: every node, or the nodes listed
// and the nodes in any of the groups listed.
type Placement struct {
	All    bool     `json:"all,omitempty"`
	Nodes  []string `json:"nodes,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Serves reports whether the node with the given id and groups serves a
// user placed by p.
func (p Placement) Serves(node string, nodeGroups []string) bool {
	if p.All || slices.Contains(p.Nodes, node) {
		return true
	}
	for _, g := range nodeGroups {
		if slices.Contains(p.Groups, g) {
			return true
		}
	}
	return false
}

// Event is the payload of every user.* event. The user is redacted: events
// are widely readable and never carry credentials (agents read those from
// the users bucket).
type Event struct {
	User User `json:"user"`
	// PreviousStatus is set on status changes.
	PreviousStatus Status `json:"previous_status,omitempty"`
	// Reason says why a status changed (see the Reason constants).
	Reason string `json:"reason,omitempty"`
}

// Reasons of status changes.
const (
	ReasonLimitReached = "traffic_limit_reached"
	ReasonExpired      = "expired"
	ReasonFirstUse     = "first_use"
	ReasonLimitReset   = "limit_reset"
	ReasonDisabled     = "disabled"
	ReasonEnabled      = "enabled"
	ReasonUpdated      = "updated"
	ReasonTrafficReset = "traffic_reset"
)
