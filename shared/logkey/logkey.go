// Package logkey defines, once, the attribute keys used in structured logs,
// so that every service's JSON logs can be queried the same way.
package logkey

// Attribute keys.
const (
	Err       = "err"
	Service   = "service"
	Component = "component"
	Node      = "node"
	User      = "user"
	Server    = "server"
	Workload  = "workload"
	Job       = "job"
	Subject   = "subject"
	Stream    = "stream"
	Bucket    = "bucket"
	Consumer  = "consumer"
	MsgID     = "msg_id"
	Seq       = "seq"
	Attempt   = "attempt"
	Delay     = "delay"
	Addr      = "addr"
	URL       = "url"
	Path      = "path"
	Method    = "method"
	Status    = "status"
	Duration  = "duration"
	Endpoint  = "endpoint"
	Config    = "config"
	Version   = "version"
	Count     = "count"
	Detail    = "detail"
)

// Attribute keys of one service or one kind of component, defined here all
// the same so that no two services name one thing differently.
const (
	// Runtime is the container runtime (docker, containerd, process) and
	// RuntimeVersion its version.
	Runtime        = "runtime"
	RuntimeVersion = "runtime_version"
	// Runtimes lists the runtimes a node offers; Target is the runtime a
	// server moves to.
	Runtimes   = "runtimes"
	Target     = "target"
	PublicAddr = "public_addr"
	Image      = "image"
	PID        = "pid"
	Topic      = "topic"
	Warning    = "warning"
	Kind       = "kind"
	// Instance identifies one run of a workload; Inbound is an Xray inbound.
	Instance   = "instance"
	Inbound    = "inbound"
	KnownUsers = "known_users"
	Added      = "added"
	Removed    = "removed"
	Sessions   = "sessions"
	ConfigHash = "config_hash"
	Revision   = "revision"
	// Holder is the holder of a lease, From and To the two ends of a change.
	Holder    = "holder"
	From      = "from"
	To        = "to"
	Rules     = "rules"
	Notifiers = "notifiers"
	// The addresses and files vpnd announces when it is ready.
	GatewayURL = "gateway_url"
	OpsURL     = "ops_url"
	NATSURL    = "nats_url"
	NATSNode   = "nats_node"
	NATSCreds  = "nats_creds"
	NATSCA     = "nats_ca"
	DataDir    = "data_dir"
	CASHA256   = "ca_sha256"
	// Kept and Dropped are the capabilities a process keeps (with what
	// for) and drops; Bounding is its bounding set.
	Kept     = "kept"
	Dropped  = "dropped"
	Bounding = "bounding"
)
