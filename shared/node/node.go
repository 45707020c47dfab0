// Package node is the contract between a host's agent and the rest of the
// system: the registration it keeps in the nodes bucket, the runtime events
// and resource stats it publishes, and the request/reply commands it
// answers on its own subjects (subject.AgentCmd(node, cmd)).
package node

import "time"

// Node is the value of a node's entry in the nodes bucket. The agent writes
// it at start and rewrites it every heartbeat interval; HeartbeatAt tells a
// reader how fresh it is, and State "stopped" says the agent left cleanly.
type Node struct {
	ID             string `json:"id"`
	Hostname       string `json:"hostname"`
	PublicAddr     string `json:"public_addr"`
	PublicAddrFrom string `json:"public_addr_from"` // "config" or "detected"
	// Groups is not what the agent says: a node's groups are the
	// operator's, in its enrollment. Kept for records of older agents.
	Groups []string `json:"groups,omitempty"`
	// Runtime is the node's default runtime: where a server that names
	// none starts. RuntimeVersion and Capabilities are the default's.
	Runtime        string   `json:"runtime"`
	RuntimeVersion string   `json:"runtime_version"`
	Capabilities   []string `json:"capabilities"`
	// Runtimes lists every runtime the agent opened on the host; servers
	// run on any of them. Empty in records of agents that opened one.
	Runtimes []RuntimeInfo `json:"runtimes,omitempty"`
	// RuntimeChosen says why Runtime is the default (configured, or what
	// auto found on the host).
	RuntimeChosen string    `json:"runtime_chosen,omitempty"`
	AgentVersion  string    `json:"agent_version"`
	State         string    `json:"state"` // "running" or "stopped"
	StartedAt     time.Time `json:"started_at"`
	HeartbeatAt   time.Time `json:"heartbeat_at"`
	// HeartbeatEvery is the interval the agent promises; readers consider
	// the node gone after a few missed beats.
	HeartbeatEvery time.Duration `json:"heartbeat_every_ns"`
}

// RuntimeInfo is one runtime a node offers.
type RuntimeInfo struct {
	Kind         string   `json:"kind"` // docker, containerd or process
	Version      string   `json:"version,omitempty"`
	Capabilities []string `json:"capabilities,omitempty"`
	// Address is the engine's socket (empty for process).
	Address string `json:"address,omitempty"`
}

// HasRuntime reports whether the node offers the runtime kind. A record
// of an agent that lists no runtimes offers its one Runtime.
func (n Node) HasRuntime(kind string) bool {
	if len(n.Runtimes) == 0 {
		return n.Runtime == kind
	}
	for _, r := range n.Runtimes {
		if r.Kind == kind {
			return true
		}
	}
	return false
}

// RuntimeKinds lists the kinds of runtime the node offers.
func (n Node) RuntimeKinds() []string {
	if len(n.Runtimes) == 0 {
		if n.Runtime == "" {
			return nil
		}
		return []string{n.Runtime}
	}
	out := make([]string, len(n.Runtimes))
	for i, r := range n.Runtimes {
		out[i] = r.Kind
	}
	return out
}

// Node states.
const (
	StateRunning = "running"
	StateStopped = "stopped"
)

// RuntimeEvent is the payload of runtime.* events
// (subject.RuntimeEvent(node, workload)).
type RuntimeEvent struct {
	Node     string    `json:"node"`
	Workload string    `json:"workload"`
	Name     string    `json:"name"`
	Kind     string    `json:"kind"` // start, die, oom, health_status, restart
	ExitCode int       `json:"exit_code,omitempty"`
	Health   string    `json:"health,omitempty"`
	Time     time.Time `json:"time"`
}

// HostStats is one sample of a host's resources, published on
// subject.HostStats(node). Counters are totals since boot; percentages are
// over the interval since the previous sample.
type HostStats struct {
	Node          string    `json:"node"`
	Time          time.Time `json:"time"`
	CPUPercent    float64   `json:"cpu_percent"` // all cores, 0-100
	CPUs          int       `json:"cpus"`
	MemTotalBytes uint64    `json:"mem_total_bytes"`
	MemUsedBytes  uint64    `json:"mem_used_bytes"`
	Load1         float64   `json:"load1"`
	Load5         float64   `json:"load5"`
	Load15        float64   `json:"load15"`
	DiskPath      string    `json:"disk_path"`
	DiskTotal     uint64    `json:"disk_total_bytes"`
	DiskUsed      uint64    `json:"disk_used_bytes"`
	NetRxBytes    uint64    `json:"net_rx_bytes"`
	NetTxBytes    uint64    `json:"net_tx_bytes"`
	UptimeSeconds float64   `json:"uptime_seconds"`
}

// WorkloadStats is one sample of a workload's resources, published on
// subject.WorkloadStats(node, workload).
type WorkloadStats struct {
	Node             string    `json:"node"`
	Workload         string    `json:"workload"`
	Name             string    `json:"name"`
	Time             time.Time `json:"time"`
	CPUPercent       float64   `json:"cpu_percent"`
	MemoryBytes      uint64    `json:"memory_bytes"`
	MemoryLimitBytes uint64    `json:"memory_limit_bytes"`
	NetRxBytes       uint64    `json:"net_rx_bytes"`
	NetTxBytes       uint64    `json:"net_tx_bytes"`
	BlockReadBytes   uint64    `json:"block_read_bytes"`
	BlockWriteBytes  uint64    `json:"block_write_bytes"`
	PIDs             uint64    `json:"pids"`
}

// Command names: the last token of subject.AgentCmd(node, cmd).
const (
	CmdStatus    = "status"
	CmdWorkloads = "workloads"
	CmdLogs      = "logs"
	CmdRestart   = "restart"
	CmdStats     = "stats"
	// CmdCutSessions ends the open sessions of users on every server of
	// the node (CutSessionsRequest → CutSessionsReply).
	CmdCutSessions = "cut_sessions"
)

// MaxCutUsers is how many users one cut_sessions request may name.
const MaxCutUsers = 1000

// CutSessionsRequest names the users whose open sessions the agent ends
// on every server of its node. Users without sessions are not an error.
type CutSessionsRequest struct {
	Users []string `json:"users"`
}

// CutSessionsReply says how many sessions the agent ended, and which of
// its servers could not end any (their Xray lacks the session extension).
type CutSessionsReply struct {
	Closed      int      `json:"closed"`
	Unsupported []string `json:"unsupported_servers,omitempty"`
}

// Workload describes one of the agent's workloads in command replies.
type Workload struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	Image        string            `json:"image"`
	State        string            `json:"state"`
	ExitCode     int               `json:"exit_code"`
	OOMKilled    bool              `json:"oom_killed"`
	RestartCount int               `json:"restart_count"`
	Labels       map[string]string `json:"labels,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	StartedAt    time.Time         `json:"started_at,omitzero"`
	FinishedAt   time.Time         `json:"finished_at,omitzero"`
}

// StatusReply answers CmdStatus.
type StatusReply struct {
	Node      Node       `json:"node"`
	Workloads []Workload `json:"workloads"`
	// Buffered counts messages waiting to be published (NATS was cut off).
	Buffered int `json:"buffered"`
}

// WorkloadsReply answers CmdWorkloads.
type WorkloadsReply struct {
	Workloads []Workload `json:"workloads"`
}

// WorkloadRequest names one workload (by id or name).
type WorkloadRequest struct {
	Workload string `json:"workload"`
}

// LogsRequest asks for a workload's output. Without Follow the reply holds
// the lines. With Follow the reply is empty and the agent sends LogChunk
// messages as requests to Deliver (the requester answers each with an
// empty message, which is the flow control); it stops when the workload
// stops, after MaxDuration, or when nobody answers on Deliver.
type LogsRequest struct {
	Workload    string        `json:"workload"`
	Tail        int           `json:"tail"`
	Follow      bool          `json:"follow"`
	Timestamps  bool          `json:"timestamps"`
	Deliver     string        `json:"deliver,omitempty"`
	MaxDuration time.Duration `json:"max_duration_ns,omitempty"`
}

// LogLine is one line of output.
type LogLine struct {
	Time   time.Time `json:"time,omitzero"`
	Stream string    `json:"stream,omitempty"`
	Text   string    `json:"text"`
}

// LogsReply answers a LogsRequest without Follow.
type LogsReply struct {
	Lines     []LogLine `json:"lines"`
	Truncated bool      `json:"truncated,omitempty"`
}

// LogChunk is one batch of followed lines; End marks the last one.
type LogChunk struct {
	Lines []LogLine `json:"lines,omitempty"`
	End   bool      `json:"end,omitempty"`
	Err   string    `json:"err,omitempty"`
}

// StatsReply answers CmdStats: the host and every workload, sampled now.
type StatsReply struct {
	Host      HostStats       `json:"host"`
	Workloads []WorkloadStats `json:"workloads"`
}

// Enrollment is the value of a node's entry in the enrollments bucket,
// written only by the registry: what the operator decided about the node
// (its groups), whether it may connect, and with which credential. Node
// groups come from here, never from what an agent says of itself.
type Enrollment struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups,omitempty"`
	State  string   `json:"state"`
	// JoinTokenID names the join token issued for the node (pending) and
	// JoinExpires when it stops being accepted; a token works once.
	JoinTokenID string    `json:"join_token_id,omitempty"`
	JoinExpires time.Time `json:"join_expires,omitzero"`
	// DefaultRuntime, when set (vpn runtime switch), is the runtime new
	// servers on the node start on: the registry names it in every server
	// created without one. Empty: the agent's own default (--runtime).
	DefaultRuntime string `json:"default_runtime,omitempty"`
	// CredentialKey is the public nkey of the node's credential, set when
	// it joined; revoking the node revokes this key.
	CredentialKey string    `json:"credential_key,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	JoinedAt      time.Time `json:"joined_at,omitzero"`
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
	// Revision is the KV revision it was read at (not stored).
	Revision uint64 `json:"revision,omitempty"`
}

// Enrollment states.
const (
	// EnrollPending nodes were added and have not joined yet.
	EnrollPending = "pending"
	// EnrollJoined nodes hold a credential.
	EnrollJoined = "joined"
	// EnrollRevoked nodes were cut off; their credential is refused.
	EnrollRevoked = "revoked"
)

// Active reports whether the node may be served desired state.
func (e Enrollment) Active() bool { return e.State != EnrollRevoked }

// AddRequest enrolls a node (subject.FleetCmd(subject.FleetAdd)): it gets
// the groups given and a single-use join token valid for TTL (zero: the
// fleet service's default). Adding a node that is pending again issues a
// new token (the old one stops working); a joined node must be revoked
// first.
type AddRequest struct {
	Node   string        `json:"node"`
	Groups []string      `json:"groups,omitempty"`
	TTL    time.Duration `json:"ttl_ns,omitempty"`
}

// AddResponse carries the join token and the one command to run on the
// new host: Command where vpn-agent is installed, InstallCommand (set by
// the gateway, which knows its public URL) to install it from the gateway.
type AddResponse struct {
	Enrollment     Enrollment `json:"enrollment"`
	Token          string     `json:"token"`
	Command        string     `json:"command"`
	InstallCommand string     `json:"install_command,omitempty"`
	Expires        time.Time  `json:"expires"`
}

// NodeRequest names one node (revoke).
type NodeRequest struct {
	Node string `json:"node"`
}

// RuntimeRequest sets the runtime new servers on a node start on
// (subject.FleetRuntime); the reply is the node's Enrollment. The node's
// agent must have reported the runtime among its own.
type RuntimeRequest struct {
	Node    string `json:"node"`
	Runtime string `json:"runtime"`
}

// RuntimesRequest asks for the runtimes of one node, or of every node
// (subject.ServersRuntimes).
type RuntimesRequest struct {
	Node string `json:"node,omitempty"`
}

// RuntimesReply answers a RuntimesRequest, sorted by node.
type RuntimesReply struct {
	Nodes []NodeRuntimes `json:"nodes"`
}

// NodeRuntimes is one node's runtimes and what runs on each.
type NodeRuntimes struct {
	Node string `json:"node"`
	// Agent is what the node's record says of its agent: running,
	// stopped, down (heartbeat missed) or unknown (never reported).
	Agent string `json:"agent"`
	// Default is where new servers start; DefaultFrom says whose choice
	// it is: "switch" (the enrollment) or the agent's own reason.
	Default     string           `json:"default,omitempty"`
	DefaultFrom string           `json:"default_from,omitempty"`
	Runtimes    []RuntimeServers `json:"runtimes"`
	// Unplaced lists servers not running on any runtime the node reported
	// (pending, failed, or on a runtime the agent no longer offers).
	Unplaced []RuntimeServer `json:"unplaced,omitempty"`
}

// Agent states of NodeRuntimes.
const (
	AgentRunning = "running"
	AgentStopped = "stopped"
	AgentDown    = "down"
	AgentUnknown = "unknown"
)

// RuntimeServers is one runtime of a node and the servers running on it.
type RuntimeServers struct {
	RuntimeInfo
	Servers []RuntimeServer `json:"servers"`
}

// RuntimeServer is one server as runtime status shows it.
type RuntimeServer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// State and Reason are its status (applied, partial, failed,
	// pending); UsersApplied of UsersDesired its users.
	State        string `json:"state"`
	Reason       string `json:"reason,omitempty"`
	UsersApplied int    `json:"users_applied"`
	UsersDesired int    `json:"users_desired"`
	// Wanted is the runtime its record names (empty: it inherits).
	Wanted string `json:"wanted,omitempty"`
}

// GroupsRequest sets a node's groups (subject.FleetGroups).
type GroupsRequest struct {
	Node   string   `json:"node"`
	Groups []string `json:"groups"`
}

// EnrollmentsResponse lists enrollments (subject.FleetList).
type EnrollmentsResponse struct {
	Enrollments []Enrollment `json:"enrollments"`
}

// JoinRequest is what a new agent sends on subject.FleetJoin(token id),
// with the join token's credential: the public key of the nkey it made
// for itself (its seed never leaves the host).
type JoinRequest struct {
	Node      string `json:"node"`
	PublicKey string `json:"public_key"`
	Hostname  string `json:"hostname,omitempty"`
}

// JoinResponse is the node's credential (a user JWT for the key it sent)
// and the CA that signs the servers' certificates.
type JoinResponse struct {
	JWT   string   `json:"jwt"`
	CAPEM string   `json:"ca_pem,omitempty"`
	URLs  []string `json:"urls"`
}
