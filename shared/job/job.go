// Package job is the contract of bulk jobs, run by the user registry
// (services/users) on vpn.jobs.*: the request and reply types of the jobs
// endpoints, the job record kept in the jobs bucket, and the payload of
// job.* events.
//
// A job is validated whole in the request (every problem reported with its
// line or record), answered with a dry-run report if asked, then applied
// asynchronously: its items travel as durable messages on the JOBS work
// queue, any replica of the registry applies them idempotently, and the
// record in the jobs bucket counts what was done. Jobs can be paused,
// resumed, cancelled, and rolled back by a compensating job built from what
// they actually applied.
package job

import (
	"strconv"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Kind names what a job does.
type Kind string

// The kinds. Import and generate create users; the others change the users
// a Filter selects; rollback undoes another job.
const (
	KindImport       Kind = "import"
	KindGenerate     Kind = "generate"
	KindDisable      Kind = "disable"
	KindEnable       Kind = "enable"
	KindDelete       Kind = "delete"
	KindSetExpiry    Kind = "set_expiry"
	KindExtend       Kind = "extend"
	KindSetLimit     Kind = "set_limit"
	KindResetTraffic Kind = "reset_traffic"
	KindRotate       Kind = "rotate_credentials"
	KindMove         Kind = "move"
	KindRollback     Kind = "rollback"
)

// Kinds lists every kind a create request may name (rollback has its own
// endpoint), in a stable order.
var Kinds = []Kind{
	KindImport, KindGenerate, KindDisable, KindEnable, KindDelete, KindSetExpiry,
	KindExtend, KindSetLimit, KindResetTraffic, KindRotate, KindMove,
}

// ByFilter reports whether k changes the users a filter selects.
func (k Kind) ByFilter() bool {
	switch k {
	case KindDisable, KindEnable, KindDelete, KindSetExpiry, KindExtend, KindSetLimit,
		KindResetTraffic, KindRotate, KindMove:
		return true
	}
	return false
}

// Format names the layout of an import file.
type Format string

// The import formats. FormatAuto (empty) detects the format from the data:
// a tar archive is seed-rust, a JSON document with Marzban's fields is
// marzban, other JSON is json, anything else csv.
const (
	FormatAuto Format = ""
	// FormatCSV: a header row naming the columns, then one user per row.
	FormatCSV Format = "csv"
	// FormatJSON: this product's own export, a JSON array of users or an
	// object {"users": [...]} (the body of vpn users list), credentials
	// and ids included.
	FormatJSON Format = "json"
	// FormatSeedRust: the Rust predecessor's users/<uuid>/config.json
	// directories, as a tar archive (optionally gzipped).
	FormatSeedRust Format = "seed-rust"
	// FormatMarzban: the body of Marzban's GET /api/users.
	FormatMarzban Format = "marzban"
)

// Formats lists every explicit format.
var Formats = []Format{FormatCSV, FormatJSON, FormatSeedRust, FormatMarzban}

// Policy says what an item's failure does to the rest of a job.
type Policy string

// The failure policies.
const (
	// PolicyContinue (the default) records the failure and goes on.
	PolicyContinue Policy = "continue"
	// PolicyStop records the failure and stops the job: items not yet
	// applied are skipped.
	PolicyStop Policy = "stop"
)

// DefaultMaxInput is the default of the largest import file the gateway
// takes into the job inputs store (its --max-import-bytes): a Marzban
// export of 50,000 users with links is about 70 MB.
const DefaultMaxInput = 128 << 20

// Input names an import file kept in the job inputs object store
// (subject.BucketJobInputs): its object name, its SHA-256 digest as the
// object store writes it ("SHA-256=<base64url>"), and its size. The
// registry reads the file by name, refuses it unless the digest matches,
// and deletes it when the job ends; a create retried after a crash finds
// it there again.
type Input struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// MaxReportProblems is how many problems, and how many warnings, a report
// (and an invalid-records error) lists; the rest are only counted
// (Report.ProblemsOmitted, WarningsOmitted), so that the reply to a file
// of 100,000 bad records still fits in one NATS message.
const MaxReportProblems = 1000

// MaxGenerate is the most users one generate job creates.
const MaxGenerate = 100_000

// Filter selects the users a job changes. Every set field must match.
type Filter struct {
	Status     user.Status   `json:"status,omitempty"`
	Protocol   user.Protocol `json:"protocol,omitempty"`
	Node       string        `json:"node,omitempty"`
	NamePrefix string        `json:"name_prefix,omitempty"`
	// ExpiresBefore selects users whose expiry is set and earlier.
	ExpiresBefore time.Time `json:"expires_before,omitzero"`
	// UsageAbove selects users whose used traffic (up + down since the
	// last reset) exceeds this many bytes.
	UsageAbove int64 `json:"usage_above,omitempty"`
}

// Empty reports whether f selects every user.
func (f Filter) Empty() bool { return f == Filter{} }

// CreateRequest starts a job (subject.JobsCmd(subject.JobsCreate)); the
// reply is a CreateResponse. A request whose input has problems creates
// nothing and fails Invalid, naming every problem as a field
// ("line 12: name"), unless SkipInvalid is set (the valid records are
// applied, the rest counted as skipped) or DryRun is set (the report is the
// answer).
type CreateRequest struct {
	Kind Kind `json:"kind"`
	// IdempotencyKey makes a retried create return the job the first
	// attempt created.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	DryRun         bool   `json:"dry_run,omitempty"`
	SkipInvalid    bool   `json:"skip_invalid,omitempty"`
	Policy         Policy `json:"policy,omitempty"`

	// Import: the file and its format (default: detected). The file is
	// either in Data, inline (base64 in JSON, so bounded by NATS's
	// max_payload: a few hundred KiB on a default 1 MiB), or in the job
	// inputs store, named by Input; the gateway sends every file that way.
	Format Format `json:"format,omitempty"`
	Data   []byte `json:"data,omitempty"`
	Input  *Input `json:"input,omitempty"`

	// Generate: Count users named NamePrefix followed by a number, each
	// created as Template says (its name is ignored).
	Count      int                 `json:"count,omitempty"`
	NamePrefix string              `json:"name_prefix,omitempty"`
	Template   *user.CreateRequest `json:"template,omitempty"`

	// By filter: the users to change and the change's parameters.
	Filter *Filter `json:"filter,omitempty"`
	// ExpiresAt is the new expiry of set_expiry.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// ExtendBy is how far extend moves each expiry: a Go duration or a
	// number of days ("30d"). Users without an expiry are skipped.
	ExtendBy string `json:"extend_by,omitempty"`
	// TrafficLimitBytes is the new limit of set_limit (0: unlimited).
	TrafficLimitBytes *int64 `json:"traffic_limit_bytes,omitempty"`
	// Protocols are those rotate_credentials renews (default: all).
	Protocols []user.Protocol `json:"protocols,omitempty"`
	// Nodes are where move places the users.
	Nodes []string `json:"nodes,omitempty"`
}

// Problem is one thing wrong with one record of the input.
type Problem struct {
	// Record counts records from 1 in input order; Line is the line of
	// the file it starts on (CSV and JSON); Source names its file inside
	// an archive (seed-rust).
	Record int    `json:"record"`
	Line   int    `json:"line,omitempty"`
	Source string `json:"source,omitempty"`
	// Name is the record's user name, when it has one.
	Name  string `json:"name,omitempty"`
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// Where says where a problem is, for one-line messages: "line 12",
// "users/<id>/config.json" or "record 3".
func (p Problem) Where() string {
	switch {
	case p.Source != "":
		return p.Source
	case p.Line > 0:
		return "line " + strconv.Itoa(p.Line)
	}
	return "record " + strconv.Itoa(p.Record)
}

// Report is what validation found: how many records (or users, for jobs
// by filter) the job would apply, and every problem.
type Report struct {
	Kind   Kind   `json:"kind"`
	Format Format `json:"format,omitempty"`
	// Records is how many records the input holds (or users matched).
	Records int `json:"records"`
	Valid   int `json:"valid"`
	Invalid int `json:"invalid"`
	// Problems lists every problem, in input order.
	Problems []Problem `json:"problems,omitempty"`
	// Warnings are mapping notes that do not stop a record (a Marzban
	// Shadowsocks password replaced by a new 2022 key, say).
	Warnings []Problem `json:"warnings,omitempty"`
	// ProblemsOmitted and WarningsOmitted count those past the first
	// MaxReportProblems, which are not listed.
	ProblemsOmitted int `json:"problems_omitted,omitempty"`
	WarningsOmitted int `json:"warnings_omitted,omitempty"`
}

// CreateResponse answers a create: the report and, unless it was a dry
// run, the job.
type CreateResponse struct {
	Report Report `json:"report"`
	Job    *Job   `json:"job,omitempty"`
}

// State is where a job stands.
type State string

// The states. Completed, Failed and Cancelled are final.
const (
	StateRunning   State = "running"
	StatePaused    State = "paused"
	StateCompleted State = "completed"
	// StateFailed: the policy was stop and an item failed.
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// Final reports whether s is a final state.
func (s State) Final() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// MaxFailures is how many failures a job record lists; later ones are only
// counted.
const MaxFailures = 100

// Failure is one item that could not be applied.
type Failure struct {
	Item   int    `json:"item"`
	Name   string `json:"name,omitempty"`
	UserID string `json:"user_id,omitempty"`
	Reason string `json:"reason"`
}

// Job is the value of a job's record in the jobs bucket
// (subject.JobRecordKey). Revision is the KV revision it was read at.
type Job struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	State  State  `json:"state"`
	Policy Policy `json:"policy"`
	Format Format `json:"format,omitempty"`
	// Total items; Done applied, Failed not applied, Skipped invalid
	// (with skip_invalid), unchanged, or left by a cancel or a stop.
	Total   int `json:"total"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	// Rate is items per second since the job started; ETA the seconds
	// left at that rate (0 when final).
	Rate       float64 `json:"rate"`
	ETASeconds float64 `json:"eta_seconds"`
	// Failures lists the first MaxFailures failures.
	Failures []Failure `json:"failures,omitempty"`
	// Batches is how many JOBS messages carry the items; DoneBatches
	// lists those applied (each is counted once).
	Batches     int   `json:"batches"`
	DoneBatches []int `json:"done_batches,omitempty"`
	// Workers counts the batches each registry replica applied.
	Workers map[string]int `json:"workers,omitempty"`
	// Input is the import file in the job inputs store while the job
	// runs; it is deleted when the job ends (a rollback replays the undo
	// logs, not the file).
	Input *Input `json:"input,omitempty"`
	// RollbackOf is the job a rollback undoes; RolledBackBy the rollback
	// of this job.
	RollbackOf   string    `json:"rollback_of,omitempty"`
	RolledBackBy string    `json:"rolled_back_by,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	Revision     uint64    `json:"revision"`
}

// Processed is how many items have an outcome.
func (j Job) Processed() int { return j.Done + j.Failed + j.Skipped }

// IDRequest names a job: get, cancel, pause, resume and rollback take it;
// each replies with the Job (rollback with the new rollback job).
type IDRequest struct {
	ID string `json:"id"`
}

// ListRequest lists jobs, newest first, optionally in one state.
type ListRequest struct {
	State State `json:"state,omitempty"`
	// Limit defaults to 50, at most 500.
	Limit int `json:"limit,omitempty"`
}

// ListResponse is the reply to a list.
type ListResponse struct {
	Jobs []Job `json:"jobs"`
}

// Event is the payload of job.progress.v1 and job.finished.v1 on
// subject.JobEvent(id): the record as of the event, without the done
// batch list.
type Event struct {
	Job Job `json:"job"`
}
