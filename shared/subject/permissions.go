package subject

import (
	"fmt"
	"strings"
)

// Permissions is what one NATS credential may do: the subjects it may
// publish to and subscribe to (allow lists; everything else is denied),
// and whether it may answer requests sent to it (a reply subject is
// allowed once per request received, as NATS's allow_responses does).
type Permissions struct {
	Publish   []string
	Subscribe []string
	Responses bool
}

// Grant is one line of a permission table: what may be done with a
// subject and why. NodePermissions is built from grants so that the table
// in docs/ARCHITECTURE.md is generated from the same function.
type Grant struct {
	// Action is "publish" or "subscribe".
	Action  string
	Subject string
	Why     string
}

// Actions of a Grant.
const (
	Publish   = "publish"
	Subscribe = "subscribe"
)

// JetStream API subjects a credential needs for the KV operations it is
// granted. They are NATS's own names ($JS.API, $KV), spelled once here.
const (
	jsAPI    = "$JS.API."
	kvPrefix = "$KV."
)

// kvPut is the subject a KV Put of key in bucket publishes to.
func kvPut(bucket, key string) string { return kvPrefix + bucket + "." + key }

// kvStreamInfo is the request that opens a bucket (js.KeyValue).
func kvStreamInfo(bucket string) string { return jsAPI + "STREAM.INFO." + KVStream(bucket) }

// kvDirectGet is the request of a KV Get of the keys matching key.
func kvDirectGet(bucket, key string) string {
	return jsAPI + "DIRECT.GET." + KVStream(bucket) + "." + kvPut(bucket, key)
}

// kvWatchCreate is the request that creates the ordered consumer of a KV
// watch of the keys matching filter: the filter is part of the subject, so
// a permission on it limits which keys the watch may see.
func kvWatchCreate(bucket, filter string) string {
	return jsAPI + "CONSUMER.CREATE." + KVStream(bucket) + ".*." + kvPut(bucket, filter)
}

// kvWatchDelete is the request that deletes a watch's ordered consumer.
func kvWatchDelete(bucket string) string { return jsAPI + "CONSUMER.DELETE." + KVStream(bucket) + ".*" }

// kvFlowControl is where a KV watch answers the server's flow control.
func kvFlowControl(bucket string) string { return "$JS.FC." + KVStream(bucket) + ".>" }

// NodeGrants lists, with reasons, everything the credential of node may
// do: publish only its own usage, stats, events, status and heartbeat;
// subscribe only to its own commands and inbox; read only its own view.
func NodeGrants(node string) []Grant {
	return []Grant{
		{Publish, Usage(node), "its usage records (USAGE stream)"},
		{Publish, statsPrefix + node + ".>", "its host and workload stats (STATS stream)"},
		{Publish, NodeEvent(node), "its registration events"},
		{Publish, RuntimeEvent(node, "*"), "its runtime events (start, die, oom, health)"},
		{Publish, ServerStatusEvent(node, "*"), "events about applying its servers"},
		{Publish, LogDelivery(node, "*"), "chunks of followed logs it was asked for"},
		{Publish, kvPut(BucketNodes, node), "its registration and heartbeat (nodes bucket, own key)"},
		{Publish, kvPut(BucketServerStatus, NodeView(node)), "its servers' status (server_status bucket, own keys)"},
		{Publish, kvDirectGet(BucketServerStatus, NodeView(node)), "reading its servers' status back"},
		{Publish, kvDirectGet(BucketNodes, node), "reading its own registration back"},
		{Publish, kvStreamInfo(BucketNodes), "opening the nodes bucket"},
		{Publish, kvStreamInfo(BucketServerStatus), "opening the server_status bucket"},
		{Publish, kvStreamInfo(BucketNodeViews), "opening the node_views bucket"},
		{Publish, kvWatchCreate(BucketNodeViews, NodeView(node)), "watching its own view (node_views, own keys)"},
		{Publish, kvDirectGet(BucketNodeViews, NodeView(node)), "reading one entry of its own view"},
		{Publish, kvWatchDelete(BucketNodeViews), "deleting that watch's consumer when it stops (names are random; no listing is granted)"},
		{Publish, kvFlowControl(BucketNodeViews), "flow control of that watch"},
		{Subscribe, AgentCmds(node), "its commands (logs, restart, status, ...)"},
		{Subscribe, "$SRV.*", "NATS micro discovery of its command service"},
		{Subscribe, "$SRV.*." + AgentServiceName, "NATS micro discovery of its command service"},
		{Subscribe, "$SRV.*." + AgentServiceName + ".*", "NATS micro discovery of its command service"},
		{Subscribe, NodeInboxPrefix(node) + ".>", "replies, acknowledgements and watch deliveries to itself"},
	}
}

// NodePermissions is the permissions of the credential of node, built
// from NodeGrants. Replies to its commands are allowed as responses.
func NodePermissions(node string) Permissions {
	return permissionsOf(NodeGrants(node), true)
}

// JoinGrants lists what the short-lived credential inside a join token may
// do: send one join request and receive its reply.
func JoinGrants(tokenID string) []Grant {
	return []Grant{
		{Publish, FleetJoin(tokenID), "its join request"},
		{Subscribe, JoinInboxPrefix(tokenID) + ".>", "the reply to it"},
	}
}

// JoinPermissions is the permissions of a join token's credential.
func JoinPermissions(tokenID string) Permissions {
	return permissionsOf(JoinGrants(tokenID), false)
}

func permissionsOf(gs []Grant, responses bool) Permissions {
	p := Permissions{Responses: responses}
	for _, g := range gs {
		switch g.Action {
		case Publish:
			p.Publish = append(p.Publish, g.Subject)
		case Subscribe:
			p.Subscribe = append(p.Subscribe, g.Subject)
		}
	}
	return p
}

// PermissionTable renders the grants of a node's credential and of a join
// token's credential as the Markdown table docs/ARCHITECTURE.md carries
// (a test keeps the two equal). Parameters show as <node> and <token>.
func PermissionTable() string {
	var b strings.Builder
	b.WriteString("| credential | may | subject | why |\n| --- | --- | --- | --- |\n")
	row := func(who string, g Grant) {
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", who, g.Action, g.Subject, g.Why)
	}
	for _, g := range NodeGrants("<node>") {
		row("node `<node>`", g)
	}
	b.WriteString("| node `<node>` | answer | the reply subject of a request it received | replies to its commands (allow_responses) |\n")
	for _, g := range JoinGrants("<token>") {
		row("join token `<token>`", g)
	}
	b.WriteString("| service (users, gateway, health, vpnd) | publish, subscribe | `>` | the control plane itself |\n")
	b.WriteString("| anonymous | nothing | | refused at connect |\n")
	return b.String()
}
