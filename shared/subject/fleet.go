package subject

import (
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// The fleet: desired state kept apart from observed state, one writer per
// bucket, and per-node views so that an agent reads only what its node
// serves (see docs/ARCHITECTURE.md, "Buckets and their writers").
const (
	// BucketUsage maps a user id to its traffic counters and the highest
	// usage window counted per node (user.Usage). Observed state: written
	// only by the registry's usage consumer (and an operator's reset).
	BucketUsage = "usage"
	// BucketServerStatus maps "<node>.<server>" to what that node's agent
	// applied of the server (server.Status). Observed state: each key is
	// written only by the agent of the node it names.
	BucketServerStatus = "server_status"
	// BucketNodeViews holds what each node must serve, derived by the
	// registry from placement: "<node>.u.<user>" is a user (view.User),
	// "<node>.s.<server>" a server with its keys (server.Server). A node's
	// credential reads only the keys under its own "<node>." prefix.
	BucketNodeViews = "node_views"
	// BucketEnrollments maps a node id to its enrollment (groups set by the
	// operator, the public key of its credential, join token state,
	// revocation). Written only by the registry.
	BucketEnrollments = "enrollments"
)

// ServerStatusKey is the key of one server's status on one node in
// BucketServerStatus.
func ServerStatusKey(node, server string) string { return node + "." + server }

// ParseServerStatusKey splits a BucketServerStatus key into node and
// server; ok is false for a key of another shape.
func ParseServerStatusKey(key string) (node, server string, ok bool) {
	node, server, ok = strings.Cut(key, ".")
	return node, server, ok && ValidToken(node) && ValidToken(server)
}

// View entry kinds: the token after the node in a BucketNodeViews key.
const (
	ViewUser   = "u"
	ViewServer = "s"
)

// ViewUserKey is the key of user in node's view.
func ViewUserKey(node, user string) string { return node + "." + ViewUser + "." + user }

// ViewServerKey is the key of server in node's view.
func ViewServerKey(node, server string) string { return node + "." + ViewServer + "." + server }

// NodeView is the key filter of everything in one node's view.
func NodeView(node string) string { return node + ".>" }

// ParseViewKey splits a BucketNodeViews key into node, kind (ViewUser or
// ViewServer) and id; ok is false for a key of another shape.
func ParseViewKey(key string) (node, kind, id string, ok bool) {
	parts := strings.Split(key, ".")
	if len(parts) != 3 || (parts[1] != ViewUser && parts[1] != ViewServer) ||
		!ValidToken(parts[0]) || !ValidToken(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ServerStatusEvent is the subject of the events a node's agent publishes
// about applying a server ("vpn.evt.server.<node>.<server>"). The node
// token comes first so a node's credential can be limited to its own.
func ServerStatusEvent(node, server string) string {
	return Event(KindServer, node+"."+server)
}

// NodeEvent is the subject of events about a node published by its own
// agent ("vpn.evt.node.<node>").
func NodeEvent(node string) string { return Event(KindNode, node) }

// LogDelivery is where a node's agent sends the chunks of one followed log
// ("vpn.logs.<node>.<id>"; id is the requester's, e.g. a nuid): under the
// node's own prefix, so its credential may publish there.
func LogDelivery(node, id string) string { return "vpn.logs." + node + "." + id }

// The fleet service: node enrollment, join and revocation (run by the
// registry). Join requests arrive on FleetJoin(token id), a subject only
// that join token's short-lived credential may publish to.
const FleetService = "vpn.fleet"

// FleetCmd is the request subject of one fleet endpoint.
func FleetCmd(endpoint string) string { return FleetService + "." + endpoint }

// Endpoints of the fleet service.
const (
	FleetAdd    = "add"
	FleetRevoke = "revoke"
	FleetList   = "list"
	FleetGroups = "groups"
	// FleetRuntime sets a node's default runtime (node.RuntimeRequest).
	FleetRuntime = "runtime"
)

// FleetJoin is the subject a new agent sends its join request to, with the
// credential of join token id.
func FleetJoin(tokenID string) string { return FleetService + ".join." + tokenID }

// AllFleetJoins is the wildcard the fleet service answers join requests on.
const AllFleetJoins = FleetService + ".join.*"

// ParseFleetJoin returns the token id of a FleetJoin subject.
func ParseFleetJoin(subj string) (string, bool) {
	id, ok := strings.CutPrefix(subj, FleetService+".join.")
	return id, ok && ValidToken(id)
}

// FleetQueueGroup is the queue group of the fleet endpoints.
const FleetQueueGroup = "fleet"

// NodeInboxPrefix is the inbox prefix of a node's connection: replies to
// its requests and its KV watches arrive below it, and its credential may
// subscribe nowhere else but its own command subjects.
func NodeInboxPrefix(node string) string { return "_INBOX_" + node }

// JoinInboxPrefix is the inbox prefix of a join token's connection.
func JoinInboxPrefix(tokenID string) string { return "_INBOX_join_" + tokenID }

// AgentServiceName is the NATS micro service name of every agent; its
// queue group is AgentQueueGroup(node).
const AgentServiceName = "vpn-agent"

// AgentQueueGroup is the queue group of a node's command endpoints.
func AgentQueueGroup(node string) string { return "vpn-agent-" + node }

// fleetBuckets declares the buckets above.
func fleetBuckets(replicas int) []jetstream.KeyValueConfig {
	return []jetstream.KeyValueConfig{
		{Bucket: BucketUsage, Description: "user id -> traffic counters and counted windows (observed)", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketServerStatus, Description: "<node>.<server> -> what that node applied (observed)", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketNodeViews, Description: "<node>.u.<user> / <node>.s.<server> -> what that node serves", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
		{Bucket: BucketEnrollments, Description: "node id -> groups, credential, join token, revocation", History: 1, Storage: jetstream.FileStorage, Replicas: replicas},
	}
}
