// Package runtime is the agent's one seam to whatever runs workloads on a
// host: the Docker engine, containerd, or supervised child processes. The
// agent reconciles VPN servers against this interface only, so a host can
// switch runtime without the rest of the agent knowing.
//
// Every implementation passes the same contract suite (package runtimetest)
// and follows the same rules:
//
//   - A runtime only ever sees the workloads it owns: those labelled
//     [LabelManaged]=true and [LabelNode]=<its node>. Anything else on the
//     host is invisible to List and every operation on it fails with
//     errs.NotFound, so the agent can never stop or remove what it did not
//     create.
//   - Errors carry shared/errs classes: unknown or foreign workload and
//     missing image → NotFound; a spec that breaks a rule or asks for
//     something the runtime cannot do → Invalid; an unreachable daemon →
//     Unavailable; a name already taken → Conflict.
//   - A failed Create leaves nothing behind.
//   - Streams (logs, stats, events) are delivered on a [Stream] that ends
//     when its context ends; cancel the context to stop one.
package runtime

import (
	"context"
	"io"
	"time"
)

// Owner labels. Every workload a runtime creates carries both, and a runtime
// selects by both, so two agents sharing one engine (or a person running
// their own containers on the host) never see each other's workloads.
const (
	LabelManaged = "vpnfleet.managed"
	LabelNode    = "vpnfleet.node"
)

// Kind names an implementation; it is what the agent reports in its node
// registration.
type Kind string

// The kinds of runtime.
const (
	KindDocker     Kind = "docker"
	KindContainerd Kind = "containerd"
	KindProcess    Kind = "process"
)

// Runtime runs and observes the agent's workloads on one host. Methods take
// a workload id as returned by Create; implementations also accept the
// workload's name.
type Runtime interface {
	// Kind tells which implementation this is.
	Kind() Kind
	// Version returns the version of the engine behind the runtime; it
	// doubles as a health probe (errs.Unavailable when unreachable).
	Version(ctx context.Context) (string, error)
	// Capabilities tells which optional parts of the contract the runtime
	// honours, so callers (and the contract suite) know what to expect
	// instead of being lied to.
	Capabilities() Capabilities

	// EnsureImage makes ref available locally, pulling it if needed and
	// reporting progress (progress may be nil). For the process runtime ref
	// is an executable path that must already exist.
	EnsureImage(ctx context.Context, ref string, progress func(Progress)) error
	// ImportImage loads an image tarball (docker-archive or OCI layout) and
	// returns the references it contained. It is how hosts without a
	// registry get images.
	ImportImage(ctx context.Context, r io.Reader) ([]string, error)

	// Create makes a stopped workload from spec and returns its id.
	Create(ctx context.Context, spec Spec) (string, error)
	// Start starts a created or stopped workload.
	Start(ctx context.Context, id string) error
	// Stop asks the workload to stop (SIGTERM), kills it after timeout, and
	// returns once it is no longer running. Stopping a stopped workload is
	// not an error. A stopped workload is not restarted by its policy.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Restart stops the workload (as Stop) and starts it again.
	Restart(ctx context.Context, id string, timeout time.Duration) error
	// Remove deletes the workload, killing it if it runs, with everything
	// the runtime created for it.
	Remove(ctx context.Context, id string) error
	// Inspect describes one workload.
	Inspect(ctx context.Context, id string) (Workload, error)
	// List describes every workload this runtime owns, and nothing else.
	List(ctx context.Context) ([]Workload, error)

	// Logs streams the workload's output, one line per value. Without
	// Follow the stream ends after the last line written so far.
	Logs(ctx context.Context, id string, opts LogOptions) (*Stream[LogLine], error)
	// Stats takes one sample of the workload's resource use; a workload
	// that is not running gives errs.Conflict.
	Stats(ctx context.Context, id string) (Stats, error)
	// StreamStats samples the workload's resource use until ctx ends or the
	// workload stops. interval is a hint: Docker samples once a second
	// whatever it is.
	StreamStats(ctx context.Context, id string, interval time.Duration) (*Stream[Stats], error)
	// Events streams lifecycle events of owned workloads. The subscription
	// is active when Events returns: nothing that happens afterwards is
	// missed.
	Events(ctx context.Context) (*Stream[Event], error)

	// Close releases the runtime's connections and background work. It
	// does not stop workloads.
	Close() error
}

// Capabilities lists the optional parts of the contract.
type Capabilities struct {
	// Images is true when workloads run from images (EnsureImage pulls,
	// ImportImage loads); false when Spec.Image is a host executable path.
	Images bool
	// MemoryLimit is true when Spec.MemoryBytes is enforced; runtimes that
	// cannot enforce it reject a spec that sets it.
	MemoryLimit bool
	// OOMEvents is true when an out-of-memory kill produces an EventOOM and
	// Workload.OOMKilled.
	OOMEvents bool
	// Mounts is true when Spec.Mounts can be honoured.
	Mounts bool
	// User is true when Spec.User can be honoured (the process runtime
	// only when the agent may switch users: root or CAP_SETUID+CAP_SETGID).
	User bool
	// ReadOnlyRootfs is true when Spec.ReadOnlyRootfs can be honoured.
	ReadOnlyRootfs bool
	// AmbientCapabilities is true when a workload with a non-root Spec.User
	// really holds Spec.Capabilities (as ambient capabilities). Docker
	// 20.10 grants them to root only, so there a spec asking for both is
	// refused and a caller that needs a capability runs the workload as
	// uid 0 with every other capability dropped.
	AmbientCapabilities bool
	// Health is true when Spec.Health checks run and produce
	// EventHealthStatus.
	Health bool
	// NetworkModes lists the accepted Spec.NetworkMode values; the first is
	// the default. Network counters in Stats are only meaningful for modes
	// that give the workload its own network namespace: host-network
	// workloads report zero on every runtime.
	NetworkModes []NetworkMode
}

// SupportsNetwork reports whether mode is one of c.NetworkModes.
func (c Capabilities) SupportsNetwork(mode NetworkMode) bool {
	for _, m := range c.NetworkModes {
		if m == mode {
			return true
		}
	}
	return false
}

// Progress is one update of an image pull.
type Progress struct {
	// Layer names the piece being fetched; empty for whole-image messages.
	Layer   string
	Status  string
	Current int64
	Total   int64
}

// State is where a workload is in its life.
type State string

// The states. Restarting is only reported while a restart policy waits to
// start the workload again.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StateRestarting State = "restarting"
	StateExited     State = "exited"
	StateUnknown    State = "unknown"
)

// Workload is what a runtime knows about one of its workloads.
type Workload struct {
	ID     string
	Name   string
	Image  string
	Labels map[string]string
	State  State
	// PID is the host pid of the main process while running, else 0.
	PID int
	// ExitCode is the code of the last exit; meaningful once StateExited.
	ExitCode int
	// OOMKilled tells whether the last exit was an out-of-memory kill
	// (only on runtimes with Capabilities.OOMEvents).
	OOMKilled bool
	// RestartCount counts restarts done by the restart policy.
	RestartCount int
	CreatedAt    time.Time
	StartedAt    time.Time
	FinishedAt   time.Time
}

// LogOptions selects which output Logs returns.
type LogOptions struct {
	// Tail keeps only the last Tail lines written so far; 0 means all.
	Tail int
	// Follow keeps the stream open for new lines until ctx ends or the
	// workload stops.
	Follow bool
	// Timestamps fills LogLine.Time where the runtime records it.
	Timestamps bool
}

// LogLine is one line of output, without its newline.
type LogLine struct {
	Time   time.Time // zero unless LogOptions.Timestamps
	Stream string    // "stdout" or "stderr"; empty when the runtime merges them
	Text   string
}

// Stats is one sample of a workload's resource use. Counters are totals
// since the workload started.
type Stats struct {
	Time time.Time
	// CPUPercent is the share of one CPU used since the previous sample
	// (100 = one core busy), as `docker stats` reports it.
	CPUPercent float64
	// MemoryBytes is resident memory in use.
	MemoryBytes uint64
	// MemoryLimitBytes is the enforced limit, or 0 when there is none.
	MemoryLimitBytes uint64
	// Network counters; zero for host-network workloads (see
	// Capabilities.NetworkModes).
	NetRxBytes uint64
	NetTxBytes uint64
	// Block I/O done by the workload.
	BlockReadBytes  uint64
	BlockWriteBytes uint64
	PIDs            uint64
}

// EventKind names a lifecycle event.
type EventKind string

// The event kinds the agent turns into EVENTS messages.
const (
	EventStart        EventKind = "start"
	EventDie          EventKind = "die"
	EventOOM          EventKind = "oom"
	EventHealthStatus EventKind = "health_status"
	EventRestart      EventKind = "restart"
)

// Event is one thing that happened to an owned workload.
type Event struct {
	Kind EventKind
	ID   string
	Name string
	Time time.Time
	// ExitCode is set for EventDie.
	ExitCode int
	// Health is set for EventHealthStatus ("healthy", "unhealthy", ...).
	Health string
}
