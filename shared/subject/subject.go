// Package subject defines, once, every NATS subject, stream, consumer and
// key-value bucket the services meet on, together with the declarations
// (stream and bucket configs) that are provisioned at start.
//
// Parametrised subjects are built by functions (AgentCmd, UserEvent, ...);
// subscribers use the wildcard constants. No other package spells a subject.
// Tokens passed to builders must satisfy ValidToken; ids are validated where
// they enter the system, so builders do not re-check them.
package subject

import "strings"

// Root prefixes. Everything the product sends lives under "vpn.".
const (
	eventsPrefix = "vpn.evt."
	usagePrefix  = "vpn.usage."
	statsPrefix  = "vpn.stats."
	jobPrefix    = "vpn.job."
	agentPrefix  = "vpn.agent."
)

// Wildcards for subscribers and stream subject lists.
const (
	AllEvents = eventsPrefix + ">"
	AllUsage  = usagePrefix + ">"
	AllStats  = statsPrefix + ">"
	AllJobs   = jobPrefix + ">"
)

// Event kinds: the second token of an event subject. The gateway's SSE
// filter and alert rules select on these.
const (
	KindUser    = "user"
	KindServer  = "server"
	KindNode    = "node"
	KindRuntime = "runtime"
	KindJob     = "job"
	KindAlert   = "alert"
	KindAudit   = "audit"
	KindHealth  = "health"
)

// Event returns the subject of an event of the given kind about key, e.g.
// Event(KindUser, id) = "vpn.evt.user.<id>".
func Event(kind, key string) string { return eventsPrefix + kind + "." + key }

// EventsOfKind is the wildcard for every event of one kind.
func EventsOfKind(kind string) string { return eventsPrefix + kind + ".>" }

// UserEvent is the subject of events about one user.
func UserEvent(userID string) string { return Event(KindUser, userID) }

// ServerEvent is the subject of events about one server.
func ServerEvent(serverID string) string { return Event(KindServer, serverID) }

// RuntimeEvent is the subject of runtime events on one node
// ("vpn.evt.runtime.<node>.<workload>").
func RuntimeEvent(node, workload string) string {
	return Event(KindRuntime, node+"."+workload)
}

// JobEvent is the subject of progress events of one job.
func JobEvent(jobID string) string { return Event(KindJob, jobID) }

// Usage is the subject an agent publishes usage records on.
func Usage(node string) string { return usagePrefix + node }

// ParseUsage returns the node of a Usage subject: the node whose
// credential published it (it may publish on its own only).
func ParseUsage(subj string) (string, bool) {
	node, ok := strings.CutPrefix(subj, usagePrefix)
	return node, ok && ValidToken(node)
}

// HostStats is the subject of host stats from one node.
func HostStats(node string) string { return statsPrefix + node + ".host" }

// WorkloadStats is the subject of one workload's stats on one node.
func WorkloadStats(node, workload string) string {
	return statsPrefix + node + ".workload." + workload
}

// JobItem is the work-queue subject of one job's items.
func JobItem(jobID string) string { return jobPrefix + jobID + ".item" }

// AgentCmd is the request subject of command cmd on the agent of node, e.g.
// AgentCmd("n1", "logs") = "vpn.agent.n1.logs".
func AgentCmd(node, cmd string) string { return agentPrefix + node + "." + cmd }

// AgentCmds is the wildcard of every command subject of one node's agent,
// used in per-node permissions.
func AgentCmds(node string) string { return agentPrefix + node + ".>" }

// Request subjects of the request/reply services (NATS micro). The service
// group prefix is followed by the endpoint name.
const (
	UsersService = "vpn.users"
	JobsService  = "vpn.jobs"
)

// UsersCmd is the request subject of one users-service endpoint.
func UsersCmd(endpoint string) string { return UsersService + "." + endpoint }

// JobsCmd is the request subject of one jobs endpoint.
func JobsCmd(endpoint string) string { return JobsService + "." + endpoint }

// ValidToken reports whether s can be one subject token (and one KV key
// segment): non-empty, at most 128 bytes of [A-Za-z0-9_-].
func ValidToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0
}

// Endpoints of the users service, each served on UsersCmd(endpoint).
const (
	UsersCreate       = "create"
	UsersGet          = "get"
	UsersList         = "list"
	UsersCount        = "count"
	UsersUpdate       = "update"
	UsersDelete       = "delete"
	UsersDisable      = "disable"
	UsersEnable       = "enable"
	UsersResetTraffic = "reset_traffic"
	UsersRotate       = "rotate_credentials"
	UsersLinks        = "links"
	UsersSubscription = "subscription"
	UsersQR           = "qr"
)

// UsersQueueGroup is the queue group of the users service's endpoints, so
// N replicas share the requests.
const UsersQueueGroup = "users"

// The servers service: desired servers (create, get, list, update, delete).
const ServersService = "vpn.servers"

// ServersCmd is the request subject of one servers endpoint.
func ServersCmd(endpoint string) string { return ServersService + "." + endpoint }

// Endpoints of the servers service.
const (
	ServersCreate = "create"
	ServersGet    = "get"
	ServersList   = "list"
	ServersUpdate = "update"
	ServersDelete = "delete"
	// ServersRuntimes answers, per node, its runtimes, its default and
	// the servers on each (node.RuntimesRequest → node.RuntimesReply).
	ServersRuntimes = "runtimes"
)

// ServersQueueGroup is the queue group of the servers service's endpoints,
// so N replicas share the requests.
const ServersQueueGroup = "servers"
