package subject

import "github.com/nats-io/nats.go/jetstream"

// Buckets of the gateway: API tokens and subscription tokens. Both are
// declared in Buckets so every start provisions them with the rest.
const (
	// BucketTokens maps an API token id (the visible part of a token) to
	// its record: name, role and the SHA-256 of the whole token. The
	// token itself is never stored.
	BucketTokens = "tokens"
	// BucketSubTokens maps "t.<subscription token>" to a user id and
	// "u.<user id>" back to that user's current token, so /sub/<token>
	// finds the user and an operator can show or rotate it.
	BucketSubTokens = "sub_tokens"
)

// tokensBucket declares BucketTokens.
func tokensBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketTokens, Description: "api token id -> role and hashed token", History: 1, Storage: jetstream.FileStorage, Replicas: replicas}
}

// subTokensBucket declares BucketSubTokens.
func subTokensBucket(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: BucketSubTokens, Description: "subscription token <-> user id", History: 1, Storage: jetstream.FileStorage, Replicas: replicas}
}

// AuditEvent is the subject of audit records of one actor (an API token
// id, or "anonymous"): "vpn.evt.audit.<actor>".
func AuditEvent(actor string) string { return Event(KindAudit, actor) }

// EventKinds lists every event kind, in a stable order, for filters that
// must reject unknown kinds.
var EventKinds = []string{KindUser, KindServer, KindNode, KindRuntime, KindJob, KindAlert, KindAudit, KindHealth}
