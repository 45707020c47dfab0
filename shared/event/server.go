package event

import (
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// ServerStatus is the payload of server.applied.v1 and server.failed.v1:
// what the agent of a server's node did with one revision of its spec. The
// agent publishes it on subject.ServerEvent(server) when the outcome
// changes, with message id "<server>:<revision>:applied" or
// "<server>:<revision>:failed:<reason digest>", so a retried publish is
// stored once. It never carries keys.
type ServerStatus struct {
	Server string `json:"server"`
	Node   string `json:"node"`
	// Revision is the servers-bucket revision of the spec applied or
	// attempted.
	Revision uint64 `json:"revision"`
	// State is "applied" or "failed" (server.State values).
	State string `json:"state"`
	// Reason says why a server failed, in one line; Fields names the
	// offending spec fields where the spec itself is at fault.
	Reason string            `json:"reason,omitempty"`
	Fields []errs.FieldError `json:"fields,omitempty"`
	// PublicHost is the host clients reach the server at (applied only).
	PublicHost string `json:"public_host,omitempty"`
	// Workload is the runtime's id of the Xray workload that serves the
	// spec; for a failure, the one left running (empty when none).
	Workload string `json:"workload,omitempty"`
	// ConfigHash identifies the Xray config the workload runs.
	ConfigHash string    `json:"config_hash,omitempty"`
	Time       time.Time `json:"time"`
}
