// Package usage is the contract of traffic accounting: the record an agent
// publishes on subject.Usage(node) for each window of counting, with
// Nats-Msg-Id = Record.MsgID(), read by the user registry (counters and
// limits) and health.
package usage

import (
	"strconv"
	"time"
)

// Record is one node's traffic for one window. Window is a per-node
// sequence that only grows: the registry applies a node's windows in
// order and counts each one once per user, so a record published or
// delivered twice is counted once.
type Record struct {
	Node   string `json:"node"`
	Window uint64 `json:"window"`
	// Start and End bound the counting window.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Users are the per-user deltas of the window; users without traffic
	// may be left out.
	Users []UserDelta `json:"users"`
}

// UserDelta is one user's traffic on the node during the window.
type UserDelta struct {
	User string `json:"user"`
	// Uplink is bytes from the client, Downlink bytes to it.
	Uplink   int64 `json:"uplink"`
	Downlink int64 `json:"downlink"`
	// LastSeen is the last time the user had traffic in the window.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// MsgID is the record's Nats-Msg-Id, "<node>:<window>".
func (r Record) MsgID() string { return r.Node + ":" + strconv.FormatUint(r.Window, 10) }

// Bounds of what the registry accepts (see services/users: CheckRecord).
const (
	// MaxAge is how far back a record's window may lie: the USAGE stream
	// keeps records this long, and an agent's outbox replays within it.
	MaxAge = 7 * 24 * time.Hour
	// MaxSkew is how far ahead of the registry's clock a record's window
	// may lie (clocks of hosts differ a little, never by minutes).
	MaxSkew = 2 * time.Minute
	// DefaultMaxRate is the throughput, in bytes per second, above which a
	// node cannot have moved a record's traffic: 100 Gbit/s.
	DefaultMaxRate int64 = 100e9 / 8
)
