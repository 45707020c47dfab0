// Package jobs runs bulk jobs for the user registry: it validates a job
// whole in the request (every problem with its line or record), answers a
// dry run with the report, and otherwise splits the job's items into
// batches on the JOBS work queue (message id "<job>:<first item>"), where
// any replica's worker applies them with the registry's batched writes.
// The record in the jobs bucket counts what was done (each batch once,
// under a compare-and-set), and an undo log per batch, written before the
// batch is applied, says what a rollback must put back.
//
// Every step is idempotent, so a replica may die anywhere: an unacknowledged
// batch is delivered again and applying it again stores nothing twice
// (created users have ids fixed in the batch, edits are compare-and-set,
// the record lists the batches it counted).
package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/jobinput"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Options tunes Jobs. Zero values pick the defaults.
type Options struct {
	// BatchSize is how many items one JOBS message carries (default 250,
	// at most registry.MaxBatch).
	BatchSize int
	// Replica names this replica in job records (default a random id).
	Replica string
	// ProgressEvery is the least time between two progress events of one
	// job from one replica (default 250ms).
	ProgressEvery time.Duration
	// OrphanAfter is how long a batch whose job record never appeared (its
	// creator died while enqueuing) is retried before it is dropped
	// (default 2 minutes).
	OrphanAfter time.Duration
	// Source names the publisher in events (default "users").
	Source string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Jobs is the core. Like the registry it keeps no state of its own
// besides a throttle for progress events.
type Jobs struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream jetstream.Stream
	reg    *registry.Registry
	idx    *index.Index
	log    *slog.Logger
	opts   Options

	mu           sync.Mutex
	lastProgress map[string]time.Time
}

// Open binds the jobs core to the jobs bucket and JOBS stream.
func Open(ctx context.Context, js jetstream.JetStream, reg *registry.Registry, idx *index.Index, log *slog.Logger, opts Options) (*Jobs, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 250
	}
	opts.BatchSize = min(opts.BatchSize, registry.MaxBatch)
	if opts.Replica == "" {
		opts.Replica = nuid.Next()
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 250 * time.Millisecond
	}
	if opts.OrphanAfter <= 0 {
		opts.OrphanAfter = 2 * time.Minute
	}
	if opts.Source == "" {
		opts.Source = "users"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	kv, err := js.KeyValue(ctx, subject.BucketJobs)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketJobs)
	}
	st, err := js.Stream(ctx, subject.StreamJobs)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening stream %s", subject.StreamJobs)
	}
	return &Jobs{js: js, kv: kv, stream: st, reg: reg, idx: idx, log: log, opts: opts, lastProgress: map[string]time.Time{}}, nil
}

func (j *Jobs) now() time.Time { return j.opts.Now().UTC().Round(0) }

func unavailable(err error, format string, args ...any) error {
	return errs.Wrap(errs.Unavailable, err, format, args...)
}

// Create validates a job and, unless it is a dry run, enqueues it.
func (j *Jobs) Create(ctx context.Context, req job.CreateRequest) (job.CreateResponse, error) {
	var fe []errs.FieldError
	if !slices.Contains(job.Kinds, req.Kind) {
		fe = append(fe, errs.FieldError{Field: "kind", Rule: "must be one of import, generate, disable, enable, delete, set_expiry, extend, set_limit, reset_traffic, rotate_credentials, move"})
	}
	if req.Policy == "" {
		req.Policy = job.PolicyContinue
	}
	if req.Policy != job.PolicyContinue && req.Policy != job.PolicyStop {
		fe = append(fe, errs.FieldError{Field: "policy", Rule: "must be continue or stop"})
	}
	if len(req.IdempotencyKey) > 256 {
		fe = append(fe, errs.FieldError{Field: "idempotency_key", Rule: "must be at most 256 characters"})
	}
	if err := errs.Fields(fe...); err != nil {
		return job.CreateResponse{}, err
	}
	id := nuid.Next()
	if req.IdempotencyKey != "" && !req.DryRun {
		prev, err := j.rememberKey(ctx, req.IdempotencyKey, id)
		if err != nil {
			return job.CreateResponse{}, err
		}
		if prev != id {
			if rec, err := j.Get(ctx, job.IDRequest{ID: prev}); err == nil {
				return job.CreateResponse{Job: &rec, Report: job.Report{Kind: rec.Kind, Records: rec.Total}}, nil
			}
			id = prev // the first attempt died enqueuing: finish it
		}
	}
	if req.Kind == job.KindImport {
		data, err := j.importData(ctx, req)
		if err != nil {
			return job.CreateResponse{}, err
		}
		req.Data = data
	}
	now := j.now()
	var p plan
	var err error
	switch {
	case req.Kind == job.KindImport:
		p, err = planImport(req, j.idx, now)
	case req.Kind == job.KindGenerate:
		p, err = planGenerate(req, j.idx, now)
	default:
		p, err = planFilter(req, j.idx, j.reg.NodeGroups(ctx, req.Filter.Node), now)
	}
	if err != nil {
		return job.CreateResponse{}, err
	}
	p.report = capReport(p.report)
	resp := job.CreateResponse{Report: p.report}
	if req.DryRun {
		return resp, nil
	}
	if len(p.report.Problems) > 0 && !req.SkipInvalid {
		return job.CreateResponse{}, problemsErr(p.report)
	}
	if len(p.items) == 0 {
		return job.CreateResponse{}, errs.Field("data", "holds no valid record; nothing to apply")
	}
	rec := job.Job{
		ID: id, Kind: req.Kind, State: job.StateRunning, Policy: req.Policy, Format: p.format,
		Total: p.report.Records, Skipped: p.report.Invalid, CreatedAt: now, UpdatedAt: now,
		Input: req.Input,
	}
	created, err := j.enqueue(ctx, rec, req.Kind, p.params, p.items)
	if err != nil {
		return job.CreateResponse{}, err
	}
	resp.Job = &created
	j.log.Info("job created", logkey.Job, id, logkey.Detail, string(req.Kind), logkey.Count, len(p.items))
	return resp, nil
}

// importData is an import's file: inline in the request (as large as
// the request could be), or read from the job inputs store when the
// request names it (the gateway's way; a create retried after a crash
// finds it there again).
func (j *Jobs) importData(ctx context.Context, req job.CreateRequest) ([]byte, error) {
	if req.Input == nil {
		return req.Data, nil
	}
	if len(req.Data) > 0 {
		return nil, errs.Field("data", "must be empty when input names the file")
	}
	return jobinput.Read(ctx, j.js, *req.Input, subject.JobInputsMaxBytes)
}

// dropInput deletes a finished job's input file; the bucket's TTL removes
// one this misses.
func (j *Jobs) dropInput(ctx context.Context, rec job.Job) {
	if rec.Input == nil || !rec.State.Final() {
		return
	}
	if err := jobinput.Delete(ctx, j.js, rec.Input.Name); err != nil {
		j.log.Warn("deleting job input", logkey.Job, rec.ID, logkey.Err, err)
	}
}

// enqueue publishes the items in batches, then stores the job record.
// Workers wait for the record, so a job whose creator dies half-way is
// never half-applied: its batches are dropped after OrphanAfter, unless a
// retry with the same idempotency key publishes the rest (the duplicate
// window drops those already there) and stores the record.
func (j *Jobs) enqueue(ctx context.Context, rec job.Job, kind job.Kind, prm Params, items []Item) (job.Job, error) {
	parts, err := split(items, j.opts.BatchSize, MaxBatchBytes)
	if err != nil {
		return job.Job{}, errs.Wrap(errs.Internal, err, "splitting job %s", rec.ID)
	}
	rec.Batches = len(parts)
	for b, part := range parts {
		msgID := rec.ID + ":" + strconv.Itoa(part[0].N)
		batch := Batch{Job: rec.ID, Index: b, Kind: kind, Params: prm, Items: part}
		if _, err := bus.Publish(ctx, j.js, subject.JobItem(rec.ID), msgID, batch); err != nil {
			return job.Job{}, err
		}
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return job.Job{}, errs.Wrap(errs.Internal, err, "encoding job %s", rec.ID)
	}
	rev, err := j.kv.Create(ctx, subject.JobRecordKey(rec.ID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return j.Get(ctx, job.IDRequest{ID: rec.ID})
	}
	if err != nil {
		return job.Job{}, unavailable(err, "storing job %s", rec.ID)
	}
	rec.Revision = rev
	j.publish(ctx, rec, true)
	return rec, nil
}

// MaxBatchBytes bounds the items of one JOBS message, so that a batch of
// imported users with long notes still fits in NATS's default 1 MiB
// message (with room for the batch's other fields and headers).
const MaxBatchBytes = 512 << 10

// split cuts items into batches of at most size items and at most
// maxBytes of encoded items each (a single larger item is a batch of its
// own). The cut depends only on the items, so a retried create publishes
// the same batches under the same message ids.
func split(items []Item, size, maxBytes int) ([][]Item, error) {
	var out [][]Item
	start, bytes := 0, 0
	for i, it := range items {
		data, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		if i > start && (i-start == size || bytes+len(data) > maxBytes) {
			out = append(out, items[start:i])
			start, bytes = i, 0
		}
		bytes += len(data) + 1
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out, nil
}

// rememberKey maps a hashed idempotency key to id unless it is known, and
// returns the id it maps to.
func (j *Jobs) rememberKey(ctx context.Context, key, id string) (string, error) {
	sum := sha256.Sum256([]byte(key))
	k := subject.JobIdempotencyKey(hex.EncodeToString(sum[:]))
	if _, err := j.kv.Create(ctx, k, []byte(id)); err == nil {
		return id, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return "", unavailable(err, "storing idempotency key")
	}
	e, err := j.kv.Get(ctx, k)
	if err != nil {
		return "", unavailable(err, "reading idempotency key")
	}
	return string(e.Value()), nil
}

// Get returns a job's record.
func (j *Jobs) Get(ctx context.Context, req job.IDRequest) (job.Job, error) {
	if !subject.ValidToken(req.ID) {
		return job.Job{}, errs.Field("id", "must be a job id")
	}
	e, err := j.kv.Get(ctx, subject.JobRecordKey(req.ID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return job.Job{}, errs.New(errs.NotFound, "job %s not found", req.ID)
	}
	if err != nil {
		return job.Job{}, unavailable(err, "reading job %s", req.ID)
	}
	return decodeJob(e)
}

func decodeJob(e jetstream.KeyValueEntry) (job.Job, error) {
	var rec job.Job
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return job.Job{}, errs.Wrap(errs.Internal, err, "decoding job %s", e.Key())
	}
	rec.Revision = e.Revision()
	return rec, nil
}

// List returns jobs, newest first.
func (j *Jobs) List(ctx context.Context, req job.ListRequest) (job.ListResponse, error) {
	limit := req.Limit
	if limit == 0 {
		limit = 50
	}
	if limit < 0 || limit > 500 {
		return job.ListResponse{}, errs.Field("limit", "must be 1-500")
	}
	lister, err := j.kv.ListKeysFiltered(ctx, subject.JobRecords)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return job.ListResponse{Jobs: []job.Job{}}, nil
	}
	if err != nil {
		return job.ListResponse{}, unavailable(err, "listing jobs")
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := []job.Job{}
	for _, k := range keys {
		e, err := j.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return job.ListResponse{}, unavailable(err, "reading job %s", k)
		}
		rec, err := decodeJob(e)
		if err != nil {
			return job.ListResponse{}, err
		}
		if req.State != "" && rec.State != req.State {
			continue
		}
		rec.DoneBatches = nil
		out = append(out, rec)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].CreatedAt.After(out[b].CreatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return job.ListResponse{Jobs: out}, nil
}

// update reads a job's record, applies fn and writes it back with a
// compare-and-set, retrying when another replica got in first. fn returns
// false to leave the record as it is.
func (j *Jobs) update(ctx context.Context, id string, fn func(rec *job.Job) (bool, error)) (job.Job, error) {
	for range 64 {
		rec, err := j.Get(ctx, job.IDRequest{ID: id})
		if err != nil {
			return job.Job{}, err
		}
		next := rec
		next.Workers = maps(rec.Workers)
		write, err := fn(&next)
		if err != nil || !write {
			return rec, err
		}
		next.UpdatedAt = j.now()
		data, err := json.Marshal(next)
		if err != nil {
			return job.Job{}, errs.Wrap(errs.Internal, err, "encoding job %s", id)
		}
		rev, err := j.kv.Update(ctx, subject.JobRecordKey(id), data, rec.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return job.Job{}, unavailable(err, "storing job %s", id)
		}
		next.Revision = rev
		return next, nil
	}
	return job.Job{}, errs.New(errs.Conflict, "job %s keeps changing; retry", id)
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// finish marks a record final in state, counting what was left as skipped.
func (j *Jobs) finish(rec *job.Job, state job.State) {
	rec.State = state
	rec.FinishedAt = j.now()
	rec.Skipped = rec.Total - rec.Done - rec.Failed
	rec.ETASeconds = 0
}

// control moves a job from one of the states in from to state to.
func (j *Jobs) control(ctx context.Context, id string, to job.State, from ...job.State) (job.Job, error) {
	rec, err := j.update(ctx, id, func(rec *job.Job) (bool, error) {
		if rec.State == to {
			return false, nil
		}
		if !slices.Contains(from, rec.State) {
			return false, errs.New(errs.Conflict, "job %s is %s; it cannot become %s", id, rec.State, to)
		}
		if to.Final() {
			j.finish(rec, to)
		} else {
			rec.State = to
		}
		return true, nil
	})
	if err != nil {
		return job.Job{}, err
	}
	if to.Final() {
		j.purge(ctx, id)
		j.dropInput(ctx, rec)
	}
	j.publish(ctx, rec, true)
	j.log.Info("job state changed", logkey.Job, id, logkey.Status, string(rec.State))
	return rec, nil
}

// purge drops a job's items still queued; a worker holding one sees the
// final state and skips it.
func (j *Jobs) purge(ctx context.Context, id string) {
	if err := j.stream.Purge(ctx, jetstream.WithPurgeSubject(subject.JobItem(id))); err != nil {
		j.log.Warn("purging job items", logkey.Job, id, logkey.Err, err)
	}
}

// Cancel stops a running or paused job: items not yet applied are skipped.
func (j *Jobs) Cancel(ctx context.Context, req job.IDRequest) (job.Job, error) {
	return j.control(ctx, req.ID, job.StateCancelled, job.StateRunning, job.StatePaused)
}

// Pause holds a running job's items until Resume.
func (j *Jobs) Pause(ctx context.Context, req job.IDRequest) (job.Job, error) {
	return j.control(ctx, req.ID, job.StatePaused, job.StateRunning)
}

// Resume lets a paused job's items be applied again.
func (j *Jobs) Resume(ctx context.Context, req job.IDRequest) (job.Job, error) {
	return j.control(ctx, req.ID, job.StateRunning, job.StatePaused)
}

// publish sends a progress event, at most every ProgressEvery per job
// unless force, or the finished event of a final record.
func (j *Jobs) publish(ctx context.Context, rec job.Job, force bool) {
	typ, id := event.JobProgress, rec.ID+":"+strconv.Itoa(rec.Processed())+":"+string(rec.State)
	if rec.State.Final() {
		typ, id = event.JobFinished, rec.ID+":finished"
	}
	now := j.opts.Now()
	j.mu.Lock()
	if typ == event.JobProgress && !force && now.Sub(j.lastProgress[rec.ID]) < j.opts.ProgressEvery {
		j.mu.Unlock()
		return
	}
	if typ == event.JobFinished {
		delete(j.lastProgress, rec.ID)
	} else {
		j.lastProgress[rec.ID] = now
	}
	j.mu.Unlock()
	rec.DoneBatches = nil
	env, err := event.New(typ, id, j.opts.Source, job.Event{Job: rec})
	if err == nil {
		_, err = bus.PublishEvent(ctx, j.js, subject.JobEvent(rec.ID), env)
	}
	if err != nil {
		j.log.Warn("publishing job event", logkey.Job, rec.ID, logkey.Err, err)
	}
}
