package event

import (
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Node health states, in the node_health bucket and health.changed.v1.
const (
	HealthHealthy  = "healthy"
	HealthDegraded = "degraded"
	HealthDown     = "down"
)

// NodeHealth is the value of a node's entry in the node_health bucket:
// health's judgement of the node, written when it changes.
type NodeHealth struct {
	Node string `json:"node"`
	// State is healthy, degraded or down; Reason says why in one line
	// (empty when healthy) and Reasons lists every cause.
	State   string   `json:"state"`
	Reason  string   `json:"reason,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	// Since is when the node entered State.
	Since       time.Time `json:"since"`
	HeartbeatAt time.Time `json:"heartbeat_at,omitzero"`
	// Workloads are the node's servers as runtime events and stats show
	// them.
	Workloads []WorkloadHealth `json:"workloads,omitempty"`
	UpdatedAt time.Time        `json:"updated_at"`
}

// Workload states in NodeHealth.
const (
	WorkloadRunning   = "running"
	WorkloadDown      = "down"
	WorkloadUnhealthy = "unhealthy"
)

// WorkloadHealth is one workload of a node.
type WorkloadHealth struct {
	Name   string    `json:"name"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// Exits counts exits within health's restart window.
	Exits int `json:"exits,omitempty"`
	// ExitTimes are the times of those exits, so a new evaluator can go
	// on counting.
	ExitTimes []time.Time `json:"exit_times,omitempty"`
}

// HealthChange is the payload of health.changed.v1
// (subject.HealthEvent(node)), id "<node>:<state>:<since unix nanos>".
type HealthChange struct {
	Node   string    `json:"node"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

// NodePoint is one downsampled point of a node's history
// (subject.NodeHistory), covering [Start, Start+Step).
type NodePoint struct {
	Node  string        `json:"node"`
	Start time.Time     `json:"start"`
	Step  time.Duration `json:"step_ns"`
	// Samples is how many host samples the point summarises.
	Samples    int     `json:"samples"`
	CPUAvg     float64 `json:"cpu_avg"`
	CPUMax     float64 `json:"cpu_max"`
	MemUsedAvg float64 `json:"mem_used_avg"`
	MemUsedMax uint64  `json:"mem_used_max"`
	MemTotal   uint64  `json:"mem_total"`
	DiskUsed   uint64  `json:"disk_used"`
	DiskTotal  uint64  `json:"disk_total"`
	// NetRx and NetTx are bytes the host received and sent in the step.
	NetRx uint64 `json:"net_rx"`
	NetTx uint64 `json:"net_tx"`
	// Uplink and Downlink are VPN user traffic through the node in the
	// step, from usage records.
	Uplink    int64           `json:"uplink"`
	Downlink  int64           `json:"downlink"`
	Workloads []WorkloadPoint `json:"workloads,omitempty"`
}

// WorkloadPoint is one workload's share of a NodePoint.
type WorkloadPoint struct {
	Name       string  `json:"name"`
	Samples    int     `json:"samples"`
	CPUAvg     float64 `json:"cpu_avg"`
	CPUMax     float64 `json:"cpu_max"`
	MemAvg     float64 `json:"mem_avg"`
	MemMax     uint64  `json:"mem_max"`
	NetRx      uint64  `json:"net_rx"`
	NetTx      uint64  `json:"net_tx"`
	MemLimit   uint64  `json:"mem_limit,omitempty"`
	BlockRead  uint64  `json:"block_read,omitempty"`
	BlockWrite uint64  `json:"block_write,omitempty"`
}

// UserPoint is one user's traffic over [Start, Start+Step), summed over
// nodes (subject.UserHistory).
type UserPoint struct {
	User     string        `json:"user"`
	Start    time.Time     `json:"start"`
	Step     time.Duration `json:"step_ns"`
	Uplink   int64         `json:"uplink"`
	Downlink int64         `json:"downlink"`
}

// NodesRequest asks vpn.health.nodes for node health: one node when Node
// is set (NotFound when health has never judged it), else every node,
// optionally only those in State.
type NodesRequest struct {
	Node  string `json:"node,omitempty"`
	State string `json:"state,omitempty"`
}

// NodesReply answers NodesRequest, sorted by node id.
type NodesReply struct {
	Nodes []NodeHealth `json:"nodes"`
}

// StatsRequest asks vpn.health.stats for a node's history between From
// and To (To defaults to now, From to To minus an hour) in points of Step
// (default: the fine resolution; at most 2,000 points per reply). Steps of
// an hour or more, or ranges older than the fine retention, are served
// from the coarse points.
type StatsRequest struct {
	Node string        `json:"node"`
	From time.Time     `json:"from,omitzero"`
	To   time.Time     `json:"to,omitzero"`
	Step time.Duration `json:"step_ns,omitempty"`
}

// StatsReply answers StatsRequest. Resolution says which history served
// it; steps without samples are left out.
type StatsReply struct {
	Node       string        `json:"node"`
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Step       time.Duration `json:"step_ns"`
	Resolution string        `json:"resolution"`
	Points     []NodePoint   `json:"points"`
}

// UsageRequest asks vpn.health.usage for a user's traffic history, with
// the same range rules as StatsRequest.
type UsageRequest struct {
	User string        `json:"user"`
	From time.Time     `json:"from,omitzero"`
	To   time.Time     `json:"to,omitzero"`
	Step time.Duration `json:"step_ns,omitempty"`
}

// UsageReply answers UsageRequest.
type UsageReply struct {
	User       string        `json:"user"`
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Step       time.Duration `json:"step_ns"`
	Resolution string        `json:"resolution"`
	Points     []UserPoint   `json:"points"`
}

// UsageRejected is the payload of node.usage_rejected.v1: which record of
// which node was refused, and why (the broken rules).
type UsageRejected struct {
	Node   string            `json:"node"`
	Window uint64            `json:"window"`
	Fields []errs.FieldError `json:"fields"`
}
