package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// ErrPaused: the batch's job is paused; the batch is delivered again later.
var ErrPaused = errors.New("job is paused")

// undoLog is what one batch changes, written before the batch is applied
// (key subject.JobAppliedKey): created ids, the users as they were before
// an edit or a delete. A delete adds the revisions of its delete markers
// once applied. A rollback's batch lists the users its deletes found at
// the first run (see rollbackDeletes).
type undoLog struct {
	Kind  job.Kind   `json:"kind"`
	Items []undoItem `json:"items"`
}

type undoItem struct {
	N       int        `json:"n"`
	ID      string     `json:"id"`
	Prev    *user.User `json:"prev,omitempty"`
	Applied bool       `json:"applied,omitempty"`
	UserSeq uint64     `json:"user_seq,omitempty"`
	NameSeq uint64     `json:"name_seq,omitempty"`
}

// outcome counts what a batch did.
type outcome struct {
	done, failed, skipped int
	failures              []job.Failure
}

func (o *outcome) fail(it Item, err error) {
	o.failed++
	o.failures = append(o.failures, job.Failure{Item: it.N, Name: it.Name, UserID: it.ID, Reason: errs.Message(err)})
}

// Apply applies one batch of items. It is the JOBS consumer's handler:
// nil acknowledges the batch; an Unavailable error (the job is paused,
// its record is not stored yet, NATS is not answering) has it delivered
// again; Invalid drops it.
func (j *Jobs) Apply(ctx context.Context, b Batch) error {
	rec, err := j.Get(ctx, job.IDRequest{ID: b.Job})
	if errs.ClassOf(err) == errs.NotFound {
		if meta, ok := bus.MetaFrom(ctx); ok && time.Since(meta.Time) > j.opts.OrphanAfter {
			return errs.New(errs.Invalid, "job %s was never stored (its creator died while enqueuing); dropping batch %d", b.Job, b.Index)
		}
		return errs.New(errs.Unavailable, "job %s is not stored yet", b.Job)
	}
	if err != nil {
		return err
	}
	switch {
	case slices.Contains(rec.DoneBatches, b.Index), rec.State.Final():
		return nil
	case rec.State == job.StatePaused:
		return errs.Wrap(errs.Unavailable, ErrPaused, "job %s", b.Job)
	}
	var out outcome
	switch b.Kind {
	case job.KindImport, job.KindGenerate:
		err = j.applyCreates(ctx, b, &out)
	case job.KindDelete:
		err = j.applyDeletes(ctx, b, &out)
	case job.KindRollback:
		err = j.applyRollback(ctx, b, &out)
	default:
		if !b.Kind.ByFilter() {
			return errs.New(errs.Invalid, "batch %d of job %s has unknown kind %q", b.Index, b.Job, b.Kind)
		}
		err = j.applyEdits(ctx, b, &out)
	}
	if err != nil {
		return err
	}
	return j.commit(ctx, b, out)
}

// commit counts a batch's outcome in the job record, once.
func (j *Jobs) commit(ctx context.Context, b Batch, out outcome) error {
	stopped := false
	rec, err := j.update(ctx, b.Job, func(rec *job.Job) (bool, error) {
		if slices.Contains(rec.DoneBatches, b.Index) {
			return false, nil
		}
		rec.DoneBatches = append(rec.DoneBatches, b.Index)
		rec.Done += out.done
		rec.Failed += out.failed
		rec.Skipped += out.skipped
		for _, f := range out.failures {
			if len(rec.Failures) < job.MaxFailures {
				rec.Failures = append(rec.Failures, f)
			}
		}
		rec.Workers[j.opts.Replica]++
		if elapsed := j.now().Sub(rec.CreatedAt).Seconds(); elapsed > 0 {
			rec.Rate = float64(rec.Processed()) / elapsed
			if rec.Rate > 0 {
				rec.ETASeconds = float64(rec.Total-rec.Processed()) / rec.Rate
			}
		}
		switch {
		case rec.State.Final():
			rec.Skipped = rec.Total - rec.Done - rec.Failed
		case rec.Policy == job.PolicyStop && out.failed > 0:
			j.finish(rec, job.StateFailed)
			stopped = true
		case len(rec.DoneBatches) == rec.Batches:
			j.finish(rec, job.StateCompleted)
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	if stopped {
		j.purge(ctx, b.Job)
	}
	if rec.State.Final() {
		j.log.Info("job finished", logkey.Job, rec.ID, logkey.Status, string(rec.State), logkey.Count, rec.Done)
		j.dropInput(ctx, rec)
	}
	j.publish(ctx, rec, false)
	return nil
}

// writeUndo stores a batch's undo log unless an earlier run of the batch
// did; it returns the log that is stored and whether it was there before.
func (j *Jobs) writeUndo(ctx context.Context, b Batch, log undoLog) (undoLog, bool, error) {
	key := subject.JobAppliedKey(b.Job, b.Index)
	data, err := json.Marshal(log)
	if err != nil {
		return undoLog{}, false, errs.Wrap(errs.Internal, err, "encoding undo log")
	}
	if _, err := j.kv.Create(ctx, key, data); err == nil {
		return log, false, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return undoLog{}, false, unavailable(err, "storing undo log of batch %d of job %s", b.Index, b.Job)
	}
	stored, err := j.readUndo(ctx, key)
	return stored, true, err
}

func (j *Jobs) readUndo(ctx context.Context, key string) (undoLog, error) {
	e, err := j.kv.Get(ctx, key)
	if err != nil {
		return undoLog{}, unavailable(err, "reading undo log %s", key)
	}
	var log undoLog
	if err := json.Unmarshal(e.Value(), &log); err != nil {
		return undoLog{}, errs.Wrap(errs.Internal, err, "decoding undo log %s", key)
	}
	return log, nil
}

func (j *Jobs) putUndo(ctx context.Context, b Batch, log undoLog) error {
	data, err := json.Marshal(log)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encoding undo log")
	}
	if _, err := j.kv.Put(ctx, subject.JobAppliedKey(b.Job, b.Index), data); err != nil {
		return unavailable(err, "storing undo log of batch %d of job %s", b.Index, b.Job)
	}
	return nil
}

// applyCreates stores the batch's new users. The undo log lists their ids
// first: a rollback deletes those that exist.
func (j *Jobs) applyCreates(ctx context.Context, b Batch, out *outcome) error {
	log := undoLog{Kind: b.Kind}
	stored := make([]registry.Stored, 0, len(b.Items))
	for _, it := range b.Items {
		log.Items = append(log.Items, undoItem{N: it.N, ID: it.User.ID})
		stored = append(stored, registry.Stored{User: *it.User, UserSeq: it.UserSeq, NameSeq: it.NameSeq})
	}
	if _, _, err := j.writeUndo(ctx, b, log); err != nil {
		return err
	}
	res, err := j.reg.BulkCreate(ctx, stored)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			out.fail(b.Items[i], r.Err)
			continue
		}
		out.done++
	}
	return nil
}

// current returns the users the items name as the index last saw them
// (the registry checks the revisions), and fails items whose user is gone.
func (j *Jobs) current(ctx context.Context, items []Item, out *outcome) ([]user.User, []Item, error) {
	users := make([]user.User, 0, len(items))
	kept := make([]Item, 0, len(items))
	for _, it := range items {
		u, ok := j.idx.Get(it.ID)
		if !ok {
			var err error
			u, err = j.reg.Get(ctx, it.ID)
			if errs.ClassOf(err) == errs.NotFound {
				out.skipped++
				continue
			}
			if err != nil {
				return nil, nil, err
			}
		}
		users = append(users, u)
		kept = append(kept, it)
	}
	return users, kept, nil
}

// applyEdits changes the batch's users as its kind says. The undo log
// holds each user as it was before the first run of the batch; edits are
// computed from that state, so running the batch again changes nothing
// more.
func (j *Jobs) applyEdits(ctx context.Context, b Batch, out *outcome) error {
	users, items, err := j.current(ctx, b.Items, out)
	if err != nil {
		return err
	}
	log := undoLog{Kind: b.Kind}
	for _, u := range users {
		prev := u
		log.Items = append(log.Items, undoItem{ID: u.ID, Prev: &prev})
	}
	stored, again, err := j.writeUndo(ctx, b, log)
	if err != nil {
		return err
	}
	before := map[string]user.User{}
	for _, it := range stored.Items {
		if it.Prev != nil {
			before[it.ID] = *it.Prev
		}
	}
	edit := editFor(b.Kind, b.Params, before)
	res, err := j.reg.BulkEdit(ctx, users, edit)
	if err != nil {
		return err
	}
	for i, r := range res {
		prev, known := before[users[i].ID]
		switch {
		case r.Err != nil:
			out.fail(items[i], r.Err)
		case r.Changed:
			out.done++
		case again && known && r.Before.Revision != prev.Revision:
			out.done++ // changed by an earlier run of this batch
		default:
			out.skipped++
		}
	}
	return nil
}

// applyDeletes deletes the batch's users; the undo log keeps them whole,
// with the revisions of the delete markers once written.
func (j *Jobs) applyDeletes(ctx context.Context, b Batch, out *outcome) error {
	users, items, err := j.current(ctx, b.Items, out)
	if err != nil {
		return err
	}
	log := undoLog{Kind: b.Kind}
	for _, u := range users {
		prev := u
		log.Items = append(log.Items, undoItem{ID: u.ID, Prev: &prev})
	}
	stored, _, err := j.writeUndo(ctx, b, log)
	if err != nil {
		return err
	}
	res, err := j.reg.BulkDelete(ctx, users)
	if err != nil {
		return err
	}
	seqs := map[string]registry.Result{}
	for i, r := range res {
		if r.Err != nil {
			out.fail(items[i], r.Err)
			continue
		}
		out.done++
		seqs[users[i].ID] = r
	}
	for k, it := range stored.Items {
		if r, ok := seqs[it.ID]; ok {
			stored.Items[k].Applied = true
			if r.UserSeq != 0 {
				stored.Items[k].UserSeq, stored.Items[k].NameSeq = r.UserSeq, r.NameSeq
			}
		}
	}
	return j.putUndo(ctx, b, stored)
}

// editFor returns the change a kind makes. Each sets a value computed
// from the user's state before the job (before, by id) where applying it
// twice would otherwise change more (extend, rotate).
func editFor(kind job.Kind, p Params, before map[string]user.User) registry.Edit {
	settled := func(u *user.User, now time.Time) registry.Change {
		o := registry.Settle(u, now)
		return registry.Change{Event: event.UserUpdated, Write: true, Previous: o.Previous, Reason: o.Reason}
	}
	return func(u *user.User, now time.Time) (registry.Change, error) {
		prev, ok := before[u.ID]
		if !ok {
			prev = *u
		}
		switch kind {
		case job.KindDisable:
			if u.Status == user.StatusDisabled {
				return registry.Change{}, nil
			}
			was := u.Status
			u.Status = user.StatusDisabled
			return registry.Change{Event: event.UserStatusChanged, Write: true, Previous: was, Reason: user.ReasonDisabled}, nil
		case job.KindEnable:
			if u.Status != user.StatusDisabled {
				return registry.Change{}, nil
			}
			u.Status = user.StatusActive
			registry.Settle(u, now)
			return registry.Change{Event: event.UserStatusChanged, Write: true, Previous: user.StatusDisabled, Reason: user.ReasonEnabled}, nil
		case job.KindSetExpiry:
			if u.ExpiresAt.Equal(p.ExpiresAt) {
				return registry.Change{}, nil
			}
			u.ExpiresAt = p.ExpiresAt
			return settled(u, now), nil
		case job.KindExtend:
			if prev.ExpiresAt.IsZero() {
				return registry.Change{}, nil // never expires: nothing to extend
			}
			target := prev.ExpiresAt.Add(p.ExtendBy)
			if u.ExpiresAt.Equal(target) {
				return registry.Change{}, nil
			}
			u.ExpiresAt = target
			return settled(u, now), nil
		case job.KindSetLimit:
			if u.TrafficLimitBytes == p.TrafficLimitBytes {
				return registry.Change{}, nil
			}
			u.TrafficLimitBytes = p.TrafficLimitBytes
			return settled(u, now), nil
		case job.KindResetTraffic:
			if u.Usage.UsedUp == 0 && u.Usage.UsedDown == 0 {
				return registry.Change{}, nil
			}
			u.Usage.UsedUp, u.Usage.UsedDown = 0, 0
			u.Usage.ResetAt = now
			o := registry.Settle(u, now)
			return registry.Change{Event: event.UserTrafficReset, Write: true, Previous: o.Previous, Reason: o.Reason}, nil
		case job.KindRotate:
			protos := p.Protocols
			if len(protos) == 0 {
				protos = u.Protocols
			}
			protos = slices.DeleteFunc(slices.Clone(protos), func(q user.Protocol) bool { return !u.Has(q) })
			if len(protos) == 0 || !reflect.DeepEqual(u.Credentials, prev.Credentials) {
				return registry.Change{}, nil // nothing to rotate, or rotated by an earlier run
			}
			method := ""
			if u.Credentials.Shadowsocks != nil {
				method = u.Credentials.Shadowsocks.Method
			}
			creds := cloneCreds(u.Credentials)
			if err := credentials.Generate(&creds, u.ID, method, protos); err != nil {
				return registry.Change{}, err
			}
			u.Credentials = creds
			return registry.Change{Event: event.UserCredentialsRotated, Write: true}, nil
		case job.KindMove:
			want := user.Placement{Nodes: p.Nodes}
			if reflect.DeepEqual(u.Placement, want) {
				return registry.Change{}, nil
			}
			u.Placement = want
			return registry.Change{Event: event.UserUpdated, Write: true, Previous: u.Status}, nil
		}
		return registry.Change{}, errs.New(errs.Invalid, "unknown kind %q", kind)
	}
}

// cloneCreds copies credentials so that a generated secret never lands in
// a copy that shares the pointers.
func cloneCreds(c user.Credentials) user.Credentials {
	out := user.Credentials{}
	if c.VLESS != nil {
		v := *c.VLESS
		out.VLESS = &v
	}
	if c.Shadowsocks != nil {
		s := *c.Shadowsocks
		out.Shadowsocks = &s
	}
	if c.SOCKS5 != nil {
		s := *c.SOCKS5
		out.SOCKS5 = &s
	}
	if c.HTTP != nil {
		h := *c.HTTP
		out.HTTP = &h
	}
	// SetKey copies the map before it writes: sharing it is safe.
	out.Keys = c.Keys
	return out
}
