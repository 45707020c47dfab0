package api

import (
	"net/http"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/openapi"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Public marks routes that need no token.
const Public auth.Role = ""

func op(method, path, id, tag, summary string) openapi.Operation {
	return openapi.Operation{Method: method, Path: path, ID: id, Tag: tag, Summary: summary}
}

// table is every route. A route's least role is here and nowhere else; the
// API description is built from this table, and the gateway's tests check
// every route against their own copy of the rules.
func (s *Server) table() []Route {
	const v1 = "/api/v1"
	usersQuery := []openapi.Param{
		{Name: "status", Description: "only users in this status", Enum: enum(user.Statuses)},
		{Name: "protocol", Description: "only users with this protocol", Enum: enum(protocol.Names())},
		{Name: "name_prefix", Description: "only users whose name starts with this"},
		{Name: "node", Description: "only users served by this node"},
		{Name: "sort", Description: "order of the page", Enum: []string{"name", "-name", "created_at", "-created_at"}},
		{Name: "cursor", Description: "next_cursor of the previous page"},
		{Name: "limit", Description: "page size, 1-1000 (default 100)", Type: "integer"},
	}
	rangeQuery := []openapi.Param{
		{Name: "from", Description: "start, RFC 3339 (default: an hour before to)"},
		{Name: "to", Description: "end, RFC 3339 (default: now)"},
		{Name: "step", Description: "point width, a duration like 1m or 1h (default: the finest kept)"},
	}
	jobsQuery := []openapi.Param{
		{Name: "state", Description: "only jobs in this state", Enum: enum(jobStates)},
		{Name: "limit", Description: "at most this many, 1-500 (default 50)", Type: "integer"},
	}
	healthyQuery := []openapi.Param{{Name: "all", Description: "include nodes that are not healthy", Type: "boolean"}}

	return []Route{
		// Ops and description: public.
		{Operation: op("GET", "/healthz", "ops.healthz", "ops", "liveness: 200 while the process runs"), h: s.healthz},
		{Operation: op("GET", "/readyz", "ops.readyz", "ops", "readiness: 200 when NATS, every stream and bucket, and the users and jobs services answer"), h: s.readyz},
		{Operation: withResp(op("GET", v1+"/openapi.json", "api.openapi", "ops", "this API's OpenAPI 3 description"), map[string]any{}), h: s.openapi},

		// Public subscription URL: the token is the credential.
		{Operation: withQuery(withType(op("GET", "/sub/{token}", "sub.get", "subscription", "a user's subscription: base64 links, Clash/mihomo YAML or sing-box JSON"), "text/plain"),
			[]openapi.Param{{Name: "format", Description: "base64 (default), clash (mihomo) or sing-box; else picked by User-Agent", Enum: []string{"base64", "clash", "mihomo", "sing-box"}}}),
			PublicLimited: true, h: s.subscription},

		// Installing an agent on a new host: public, like a package
		// mirror (nothing here is secret; the join token never passes).
		{Operation: withType(op("GET", "/install/agent.sh", "install.script", "install",
			"the agent installer, a POSIX sh script for this gateway: curl -fsSL <gateway>/install/agent.sh | sh -s -- --token <join token>"), "text/x-shellscript"),
			PublicLimited: true, h: s.installScript},
		{Operation: withQuery(withType(op("GET", "/install/vpn-agent", "install.agent", "install", "the vpn-agent binary of a platform (its SHA-256 in X-Checksum-Sha256)"), "application/octet-stream"), platformQuery),
			PublicLimited: true, h: s.installBinary("vpn-agent")},
		{Operation: withQuery(withType(op("GET", "/install/xray", "install.xray", "install", "the Xray binary of a platform, which the agent runs (its SHA-256 in X-Checksum-Sha256)"), "application/octet-stream"), platformQuery),
			PublicLimited: true, h: s.installBinary("xray")},
		{Operation: withQuery(withType(op("GET", "/install/checksums", "install.checksums", "install", "the SHA-256 of a platform's binaries, as sha256sum prints them"), "text/plain"), platformQuery),
			PublicLimited: true, h: s.installChecksums},

		{Operation: withResp(op("GET", v1+"/status", "status.get", "status", "the gateway, the services behind it and the caller's token"), Status{}), Need: auth.Viewer, h: s.status},

		// Users.
		{Operation: withQuery(withResp(op("GET", v1+"/users", "users.list", "users", "a page of users matching the filters"), user.ListResponse{}), usersQuery), Need: auth.Viewer, h: s.listUsers},
		{Operation: withStatus(withReq(withResp(op("POST", v1+"/users", "users.create", "users", "create a user (Idempotency-Key header makes retries safe)"), user.User{}), user.CreateRequest{}), http.StatusCreated), Need: auth.Operator, h: s.createUser},
		{Operation: withResp(op("GET", v1+"/users/{user}", "users.get", "users", "a user by id or name (credentials only for operators)"), user.User{}), Need: auth.Viewer, h: s.getUser},
		{Operation: withReq(withResp(op("PATCH", v1+"/users/{user}", "users.update", "users", "change the fields that are set"), user.User{}), UpdateUserRequest{}), Need: auth.Operator, h: s.updateUser},
		{Operation: withReq(withResp(op("DELETE", v1+"/users/{user}", "users.delete", "users", "delete a user"), user.DeleteResponse{}), RevisionBody{}), Need: auth.Operator, h: s.deleteUser},
		{Operation: withReq(withResp(op("POST", v1+"/users/{user}/disable", "users.disable", "users", "switch a user off"), user.User{}), RevisionBody{}), Need: auth.Operator, h: s.setEnabled(false)},
		{Operation: withReq(withResp(op("POST", v1+"/users/{user}/enable", "users.enable", "users", "switch a user back on"), user.User{}), RevisionBody{}), Need: auth.Operator, h: s.setEnabled(true)},
		{Operation: withReq(withResp(op("POST", v1+"/users/{user}/reset-traffic", "users.reset_traffic", "users", "restart a user's traffic counters"), user.User{}), RevisionBody{}), Need: auth.Operator, h: s.resetTraffic},
		{Operation: withReq(withResp(op("POST", v1+"/users/{user}/rotate", "users.rotate", "users", "replace a user's credentials (all protocols, or those listed)"), user.User{}), RotateBody{}), Need: auth.Operator, h: s.rotate},
		{Operation: withResp(op("POST", v1+"/users/{user}/sessions/cut", "users.cut_sessions", "users", "end the connections a user has open on every node that is up, without changing the user (a node that is down or a user without connections is a no-op)"), CutSessionsResponse{}), Need: auth.Operator, h: s.cutSessions},
		{Operation: withQuery(withResp(op("GET", v1+"/users/{user}/links", "users.links", "users", "a user's client links on healthy nodes"), user.LinksResponse{}), healthyQuery), Need: auth.Operator, h: s.links},
		{Operation: withQuery(withType(op("GET", v1+"/users/{user}/qr", "users.qr", "users", "a QR code of one of a user's links: PNG, or text with Accept: text/plain"), "image/png"),
			[]openapi.Param{{Name: "server", Description: "server id of the link (default: the first link)"}, {Name: "protocol", Enum: enum(protocol.Names())}, {Name: "size", Type: "integer", Description: "PNG width, 64-1024"}, {Name: "format", Enum: []string{"png", "text"}}}),
			Need: auth.Operator, h: s.qr},
		{Operation: withQuery(withResp(op("GET", v1+"/users/{user}/usage", "users.usage", "users", "a user's traffic history from the health service"), event.UsageReply{}), rangeQuery), Need: auth.Viewer, h: s.userUsage},
		{Operation: withResp(op("GET", v1+"/users/{user}/subscription", "users.subscription", "users", "a user's subscription URL (made on first use)"), Subscription{}), Need: auth.Operator, h: s.userSubscription},
		{Operation: withResp(op("POST", v1+"/users/{user}/subscription/rotate", "users.subscription_rotate", "users", "replace a user's subscription URL; the old one stops working"), Subscription{}), Need: auth.Operator, h: s.rotateSubscription},

		// Nodes.
		{Operation: withResp(op("GET", v1+"/nodes", "nodes.list", "nodes", "every registered node, with health from its heartbeat and groups from its enrollment, and enrolled nodes never seen (pending)"), NodeList{}), Need: auth.Viewer, h: s.listNodes},
		{Operation: withResp(op("GET", v1+"/nodes/{node}", "nodes.get", "nodes", "a node and, when its agent answers, its workloads"), NodeDetail{}), Need: auth.Viewer, h: s.getNode},
		{Operation: withQuery(withResp(op("GET", v1+"/nodes/{node}/stats", "nodes.stats", "nodes", "a node's history (CPU, memory, disk, network, VPN traffic) from the health service"), event.StatsReply{}), rangeQuery), Need: auth.Viewer, h: s.nodeStats},
		// Enrollment: a join token grants a host access to the bus, so
		// adding and revoking nodes is for admins; regrouping is an
		// operator's everyday change.
		{Operation: withStatus(withReq(withResp(op("POST", v1+"/nodes", "nodes.add", "nodes", "enroll a node: its groups and a single-use join token, with the one command to run on the new host (the token is in this response only)"), node.AddResponse{}), AddNodeRequest{}), http.StatusCreated), Need: auth.Admin, h: s.addNode},
		{Operation: withResp(op("GET", v1+"/enrollments", "nodes.enrollments", "nodes", "every node's enrollment: groups, state (pending, joined, revoked), never a token"), node.EnrollmentsResponse{}), Need: auth.Viewer, h: s.listEnrollments},
		{Operation: withReq(withResp(op("PUT", v1+"/nodes/{node}/groups", "nodes.groups", "nodes", "set a node's groups; what it serves follows"), node.Enrollment{}), NodeGroupsRequest{}), Need: auth.Operator, h: s.setNodeGroups},
		{Operation: withReq(withResp(op("PUT", v1+"/nodes/{node}/runtime", "nodes.runtime", "nodes", "set the runtime new servers on a node start on (docker, containerd, process; one its agent reported); running servers stay where they run"), node.Enrollment{}), NodeRuntimeRequest{}), Need: auth.Operator, h: s.setNodeRuntime},
		{Operation: withQuery(withResp(op("GET", v1+"/runtimes", "runtimes.status", "nodes", "per node: the runtimes its agent offers, the default for new servers and why, and the servers running on each with their status"), node.RuntimesReply{}), []openapi.Param{{Name: "node", Description: "only this node"}}), Need: auth.Viewer, h: s.runtimeStatus},
		{Operation: withResp(op("POST", v1+"/nodes/{node}/revoke", "nodes.revoke", "nodes", "revoke a node: its credential stops working at once and it serves nothing more"), node.Enrollment{}), Need: auth.Admin, h: s.revokeNode},

		// Alerts (the health service).
		{Operation: withQuery(withResp(op("GET", v1+"/alerts", "alerts.list", "alerts", "alerts, most recent first (firing by default)"), event.AlertsReply{}),
			[]openapi.Param{{Name: "status", Description: "firing (default), resolved or all", Enum: alertStatuses}, {Name: "severity", Enum: alertSeverities}, {Name: "node", Description: "only alerts about this node"}}),
			Need: auth.Viewer, h: s.listAlerts},
		{Operation: withReq(withResp(op("POST", v1+"/alerts/{alert}/ack", "alerts.ack", "alerts", "acknowledge an alert (until it fires again), recording who and why"), event.Alert{}), AckBody{}), Need: auth.Operator, h: s.ackAlert},

		// Servers.
		{Operation: withQuery(withResp(op("GET", v1+"/servers", "servers.list", "servers", "servers, all or one node's"), server.ListResponse{}), []openapi.Param{{Name: "node", Description: "only this node's servers"}}), Need: auth.Viewer, h: s.listServers},
		{Operation: withStatus(withReq(withResp(op("POST", v1+"/servers", "servers.deploy", "servers", "deploy a server on a node"), server.Server{}), server.CreateRequest{}), http.StatusCreated), Need: auth.Operator, h: s.deployServer},
		{Operation: withResp(op("GET", v1+"/servers/{server_id}", "servers.get", "servers", "a server by id or name"), server.Server{}), Need: auth.Viewer, h: s.getServer},
		{Operation: withReq(withResp(op("PATCH", v1+"/servers/{server_id}", "servers.update", "servers", "change a server's name or inbounds"), server.Server{}), UpdateServerRequest{}), Need: auth.Operator, h: s.updateServer},
		{Operation: withReq(withResp(op("DELETE", v1+"/servers/{server_id}", "servers.remove", "servers", "remove a server; its agent stops it"), server.DeleteResponse{}), RevisionBody{}), Need: auth.Operator, h: s.removeServer},
		{Operation: withResp(op("POST", v1+"/servers/{server_id}/restart", "servers.restart", "servers", "restart a server's workload on its node"), node.Workload{}), Need: auth.Operator, h: s.restartServer},
		{Operation: withQuery(withResp(op("GET", v1+"/servers/{server_id}/logs", "servers.logs", "servers", "a server's output; follow=true streams NDJSON log lines"), node.LogsReply{}),
			[]openapi.Param{{Name: "tail", Type: "integer", Description: "last N lines, 0-10000 (default 200)"}, {Name: "follow", Type: "boolean"}, {Name: "timestamps", Type: "boolean"}}),
			Need: auth.Operator, h: s.serverLogs},

		// Bulk jobs: reading them is harmless (counters, failures by user
		// name, no credentials), so viewers may watch; every change needs
		// an operator.
		{Operation: withQuery(withResp(op("GET", v1+"/jobs", "jobs.list", "jobs", "bulk jobs, newest first"), job.ListResponse{}), jobsQuery), Need: auth.Viewer, h: s.listJobs},
		{Operation: withForm(withOther(withStatus(withReq(withResp(op("POST", v1+"/jobs", "jobs.create", "jobs",
			"start a bulk job (import, generate, change by filter): JSON, or multipart/form-data with the file to import; dry_run answers the report (200) and creates nothing"),
			job.CreateResponse{}), job.CreateRequest{}), http.StatusAccepted), map[int]string{http.StatusOK: "dry run: the report, no job"}), jobForm),
			Need: auth.Operator, h: s.createJob},
		{Operation: withResp(op("GET", v1+"/jobs/{job}", "jobs.get", "jobs", "a job: state, counters, rate, ETA, failures"), job.Job{}), Need: auth.Viewer, h: s.getJob},
		{Operation: withResp(op("POST", v1+"/jobs/{job}/cancel", "jobs.cancel", "jobs", "stop a running or paused job; items not applied are skipped"), job.Job{}), Need: auth.Operator, h: s.jobControl(subject.JobsCancel)},
		{Operation: withResp(op("POST", v1+"/jobs/{job}/pause", "jobs.pause", "jobs", "hold a running job's items until resume"), job.Job{}), Need: auth.Operator, h: s.jobControl(subject.JobsPause)},
		{Operation: withResp(op("POST", v1+"/jobs/{job}/resume", "jobs.resume", "jobs", "let a paused job go on"), job.Job{}), Need: auth.Operator, h: s.jobControl(subject.JobsResume)},
		{Operation: withStatus(withResp(op("POST", v1+"/jobs/{job}/rollback", "jobs.rollback", "jobs", "start the job that undoes a finished job (the same rollback when asked again)"), job.Job{}), http.StatusAccepted), Need: auth.Operator, h: s.jobControl(subject.JobsRollback)},
		{Operation: withQuery(withType(op("GET", v1+"/jobs/{job}/events", "jobs.events", "jobs",
			"a job's progress as Server-Sent Events: its last event at once, then each new one; ends after job.finished.v1; resume with Last-Event-ID (204 when nothing follows)"), "text/event-stream"),
			[]openapi.Param{{Name: "since", Type: "integer", Description: "stream sequence to resume after, like Last-Event-ID"}}),
			Need: auth.Viewer, h: s.jobEvents},

		// Events.
		{Operation: withQuery(withType(op("GET", v1+"/events", "events.stream", "events", "domain events as Server-Sent Events; id is the EVENTS stream sequence, resume with Last-Event-ID"), "text/event-stream"),
			[]openapi.Param{{Name: "kind", Description: "comma-separated event kinds: " + joinKinds()}, {Name: "since", Type: "integer", Description: "stream sequence to resume after, like Last-Event-ID (0: from the oldest event kept)"}}),
			Need: auth.Viewer, h: s.events},

		// Backup: every secret of the installation, for admins only.
		{Operation: withType(op("POST", v1+"/backup", "backup.create", "backup",
			"a backup of every stream and bucket (and vpnd's NATS trust) as one file; restore it with `vpn backup restore`"), "application/octet-stream"),
			Need: auth.Admin, h: s.backup},

		// Tokens.
		{Operation: withResp(op("GET", v1+"/tokens", "tokens.list", "tokens", "every API token (never the secret)"), TokenList{}), Need: auth.Admin, h: s.listTokens},
		{Operation: withStatus(withReq(withResp(op("POST", v1+"/tokens", "tokens.create", "tokens", "create a token; the token is in this response only"), CreatedToken{}), CreateTokenRequest{}), http.StatusCreated), Need: auth.Admin, h: s.createToken},
		{Operation: withResp(op("DELETE", v1+"/tokens/{id}", "tokens.revoke", "tokens", "revoke a token"), auth.Token{}), Need: auth.Admin, h: s.revokeToken},
	}
}

func withReq(o openapi.Operation, v any) openapi.Operation  { o.Request = v; return o }
func withResp(o openapi.Operation, v any) openapi.Operation { o.Response = v; return o }
func withType(o openapi.Operation, ct string) openapi.Operation {
	o.ContentType = ct
	return o
}
func withOther(o openapi.Operation, other map[int]string) openapi.Operation {
	o.Other = other
	return o
}
func withForm(o openapi.Operation, f *openapi.Form) openapi.Operation { o.Form = f; return o }
func withStatus(o openapi.Operation, st int) openapi.Operation        { o.Status = st; return o }
func withQuery(o openapi.Operation, q []openapi.Param) openapi.Operation {
	o.Query = q
	return o
}

func enum[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func joinKinds() string {
	out := ""
	for i, k := range subject.EventKinds {
		if i > 0 {
			out += ", "
		}
		out += k
	}
	return out
}
