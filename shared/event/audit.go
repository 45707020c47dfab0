package event

import "time"

// Audit is the payload of an audit.recorded.v1 event: one mutating call
// to the HTTP API, who made it and how it ended. The gateway publishes it
// on subject.AuditEvent(actor) with ID as the message id.
type Audit struct {
	// ID is the request id (also the X-Request-Id response header).
	ID string `json:"id"`
	// Actor is the API token id (ActorAnonymous when no token was
	// recognised); ActorName is the token's name.
	Actor     string `json:"actor"`
	ActorName string `json:"actor_name,omitempty"`
	Role      string `json:"role,omitempty"`
	// Action names the operation, e.g. "users.create", "tokens.revoke".
	Action string `json:"action"`
	// Target is what the call acted on, e.g. "user/alice"; empty for
	// creations that failed before a target existed.
	Target string `json:"target,omitempty"`
	// Result is "ok", "denied" or "error"; Status is the HTTP status and
	// Code the problem code of a failure.
	Result string    `json:"result"`
	Status int       `json:"status"`
	Code   string    `json:"code,omitempty"`
	Remote string    `json:"remote,omitempty"`
	Time   time.Time `json:"time"`
	// Count, when above 1, makes the record a summary: it stands for that
	// many refusals (4xx) of one actor, action and status within a window,
	// after the first of them, which has its own record. Time and ID are
	// the last one's. Zero or 1 is one call.
	Count int `json:"count,omitempty"`
}

// The results of an audited call.
const (
	AuditOK     = "ok"
	AuditDenied = "denied"
	AuditError  = "error"
)

// ActorAnonymous is the actor of calls refused before a token was
// recognised (401: no, unknown, revoked or expired token).
const ActorAnonymous = "anonymous"
