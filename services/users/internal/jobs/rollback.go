package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Rollback starts the compensating job of a finished job, built from its
// undo logs, that is from what it actually applied: users it created are
// deleted, users it changed get their content from before the job back
// (their traffic counters stay as they are now), users it deleted are
// created again with the same id and credentials, so their old links work.
// Rolling back twice returns the same rollback job.
func (j *Jobs) Rollback(ctx context.Context, req job.IDRequest) (job.Job, error) {
	orig, err := j.Get(ctx, req)
	if err != nil {
		return job.Job{}, err
	}
	switch {
	case orig.Kind == job.KindRollback:
		return job.Job{}, errs.New(errs.Invalid, "job %s is a rollback; it cannot be rolled back", orig.ID)
	case !orig.State.Final():
		return job.Job{}, errs.New(errs.Conflict, "job %s is %s; cancel it or wait for it to finish before rolling it back", orig.ID, orig.State)
	}
	if orig.RolledBackBy != "" {
		if rb, err := j.Get(ctx, job.IDRequest{ID: orig.RolledBackBy}); err == nil {
			return rb, nil
		}
	}
	items, err := j.undoItems(ctx, orig)
	if err != nil {
		return job.Job{}, err
	}
	if len(items) == 0 {
		return job.Job{}, errs.New(errs.Invalid, "job %s applied nothing; there is nothing to roll back", orig.ID)
	}
	id := orig.RolledBackBy
	if id == "" {
		id = nuid.Next()
	}
	marked, err := j.update(ctx, orig.ID, func(rec *job.Job) (bool, error) {
		if rec.RolledBackBy != "" {
			return false, nil
		}
		rec.RolledBackBy = id
		return true, nil
	})
	if err != nil {
		return job.Job{}, err
	}
	id = marked.RolledBackBy
	now := j.now()
	rec := job.Job{
		ID: id, Kind: job.KindRollback, State: job.StateRunning, Policy: job.PolicyContinue,
		Total: len(items), RollbackOf: orig.ID, CreatedAt: now, UpdatedAt: now,
	}
	created, err := j.enqueue(ctx, rec, job.KindRollback, Params{}, items)
	if err != nil {
		return job.Job{}, err
	}
	j.log.Info("rollback created", logkey.Job, id, logkey.Detail, orig.ID, logkey.Count, len(items))
	return created, nil
}

// undoItems reads a job's undo logs, in batch order, and turns them into
// compensating items.
func (j *Jobs) undoItems(ctx context.Context, orig job.Job) ([]Item, error) {
	lister, err := j.kv.ListKeysFiltered(ctx, subject.JobAppliedKeys(orig.ID))
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(err, "listing undo logs of job %s", orig.ID)
	}
	type keyed struct {
		batch int
		key   string
	}
	var keys []keyed
	for k := range lister.Keys() {
		n, _ := strconv.Atoi(k[strings.LastIndexByte(k, '.')+1:])
		keys = append(keys, keyed{n, k})
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a].batch < keys[b].batch })
	var items []Item
	for _, k := range keys {
		log, err := j.readUndo(ctx, k.key)
		if err != nil {
			return nil, err
		}
		for _, it := range log.Items {
			n := len(items) + 1
			switch {
			case log.Kind == job.KindImport || log.Kind == job.KindGenerate:
				items = append(items, Item{N: n, Action: actDelete, ID: it.ID})
			case log.Kind == job.KindDelete && it.Prev != nil:
				prev := *it.Prev
				prev.Revision = 0
				items = append(items, Item{N: n, Action: actCreate, ID: prev.ID, Name: prev.Name, User: &prev, UserSeq: it.UserSeq, NameSeq: it.NameSeq})
			case it.Prev != nil:
				items = append(items, Item{N: n, Action: actRestore, ID: it.ID, Name: it.Prev.Name, Prev: it.Prev})
			}
		}
	}
	return items, nil
}

// applyRollback applies compensating items: deletes, restores of content
// and re-creations.
func (j *Jobs) applyRollback(ctx context.Context, b Batch, out *outcome) error {
	var dels, restores, creates []Item
	for _, it := range b.Items {
		switch it.Action {
		case actDelete:
			dels = append(dels, it)
		case actRestore:
			restores = append(restores, it)
		case actCreate:
			creates = append(creates, it)
		}
	}
	if len(dels) > 0 {
		if err := j.rollbackDeletes(ctx, b, dels, out); err != nil {
			return err
		}
	}
	if len(restores) > 0 {
		users, items, err := j.current(ctx, restores, out)
		if err != nil {
			return err
		}
		prev := map[string]user.User{}
		for _, it := range items {
			prev[it.ID] = *it.Prev
		}
		res, err := j.reg.BulkEdit(ctx, users, restore(prev))
		if err != nil {
			return err
		}
		for i, r := range res {
			if r.Err != nil {
				out.fail(items[i], r.Err)
			} else {
				out.done++ // restored now or by an earlier run
			}
		}
	}
	if len(creates) > 0 {
		stored := make([]registry.Stored, 0, len(creates))
		for _, it := range creates {
			stored = append(stored, registry.Stored{User: *it.User, UserSeq: it.UserSeq, NameSeq: it.NameSeq})
		}
		res, err := j.reg.BulkCreate(ctx, stored)
		if err != nil {
			return err
		}
		count(res, creates, out)
	}
	return nil
}

// rollbackDeletes deletes the users a job created. The batch's log (key
// subject.JobAppliedKey of the rollback job; a rollback is never rolled
// back) lists the users its first run found, written before they are
// deleted: when the batch is delivered again after a crash, a user on
// that list and gone now was deleted by the first run and counts as done;
// one gone already at the first run (someone deleted it) is skipped.
func (j *Jobs) rollbackDeletes(ctx context.Context, b Batch, dels []Item, out *outcome) error {
	var gone outcome
	users, items, err := j.current(ctx, dels, &gone)
	if err != nil {
		return err
	}
	log := undoLog{Kind: job.KindRollback}
	for _, u := range users {
		log.Items = append(log.Items, undoItem{ID: u.ID})
	}
	stored, _, err := j.writeUndo(ctx, b, log)
	if err != nil {
		return err
	}
	found := make(map[string]bool, len(stored.Items))
	for _, it := range stored.Items {
		found[it.ID] = true
	}
	kept := make(map[string]bool, len(items))
	for _, it := range items {
		kept[it.ID] = true
	}
	for _, it := range dels {
		switch {
		case kept[it.ID]:
		case found[it.ID]:
			out.done++ // deleted by an earlier run of this batch
		default:
			out.skipped++
		}
	}
	res, err := j.reg.BulkDelete(ctx, users)
	if err != nil {
		return err
	}
	count(res, items, out)
	return nil
}

func count(res []registry.Result, items []Item, out *outcome) {
	for i, r := range res {
		if r.Err != nil {
			out.fail(items[i], r.Err)
		} else {
			out.done++
		}
	}
}

// restore puts back each user's content from before the job, keeping its
// identity, creation time and current traffic counters.
func restore(prev map[string]user.User) registry.Edit {
	return func(u *user.User, now time.Time) (registry.Change, error) {
		p, ok := prev[u.ID]
		if !ok {
			return registry.Change{}, nil
		}
		next := p
		next.ID, next.CreatedAt, next.Usage, next.Revision, next.UpdatedAt = u.ID, u.CreatedAt, u.Usage, u.Revision, u.UpdatedAt
		if sameContent(next, *u) {
			return registry.Change{}, nil
		}
		was := u.Status
		if registry.NameKey(next.Name) != registry.NameKey(u.Name) {
			return registry.Change{}, errs.New(errs.Invalid, "user %s was renamed since; not restored", u.ID)
		}
		*u = next
		o := registry.Settle(u, now)
		reason := o.Reason
		if reason == "" && u.Status != was {
			reason = user.ReasonUpdated
		}
		return registry.Change{Event: event.UserUpdated, Write: true, Previous: was, Reason: reason}, nil
	}
}

func sameContent(a, b user.User) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
