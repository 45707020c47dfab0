package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Bulk writes for jobs. Each takes many users at once and stores them as a
// few atomic batches (name claims, users, events: one sync to disk each),
// with the same compare-and-set expectations the single-user paths use. A
// batch the server refuses as a whole (a name taken since validation, a
// user changed since it was read, a redelivered batch that was already
// stored) is redone item by item on the single-user paths, which sort out
// what is already there. Every bulk write is idempotent: run twice with
// the same input, it stores each change once.

// Stored is a user for BulkCreate: complete, with its id and credentials.
// UserSeq and NameSeq are the last revisions of its key in the users and
// user_names buckets when those hold delete markers (restoring a deleted
// user); 0 when they were never written. Wrong values only cost speed.
type Stored struct {
	User    user.User
	UserSeq uint64
	NameSeq uint64
}

// Result is the outcome of one item of a bulk write. Err is a permanent
// failure of that item (a name taken by another user, a user gone); a
// transient failure fails the whole call instead.
type Result struct {
	// Before is the user as it was (edits and deletes), After as written
	// (creates and edits; its Revision is the new one).
	Before, After user.User
	// Changed is false when the item needed no write (already in the
	// wanted state, or written by an earlier run of the same batch).
	Changed bool
	// UserSeq and NameSeq are the revisions of the delete markers a bulk
	// delete wrote, for a later restore (0 when unknown).
	UserSeq, NameSeq uint64
	Err              error
}

// BulkCreate stores new users: claims their names, creates them, and
// publishes user.created.v1 for each. A user whose id already exists is
// taken as created by an earlier run of the same batch.
func (r *Registry) BulkCreate(ctx context.Context, items []Stored) ([]Result, error) {
	r.reenable(ctx)
	res := make([]Result, len(items))
	var todo []int
	var err error
	inBatches(len(items), func(lo, hi int) {
		if err != nil {
			return
		}
		msgs := make([]*nats.Msg, 0, hi-lo)
		for i := lo; i < hi; i++ {
			u := items[i].User
			res[i].After = u
			msgs = append(msgs, kvMsg(subject.BucketUserNames, NameKey(u.Name), []byte(u.ID), items[i].NameSeq))
		}
		if _, berr := r.atomicPublish(ctx, msgs); berr == nil {
			for i := lo; i < hi; i++ {
				todo = append(todo, i)
			}
			return
		} else if !errors.Is(berr, ErrBatchRefused) {
			err = berr
			return
		}
		for i := lo; i < hi; i++ {
			u := items[i].User
			cerr := r.claimName(ctx, u.Name, u.ID)
			switch {
			case cerr == nil:
				todo = append(todo, i)
			case errs.ClassOf(cerr) == errs.Conflict:
				res[i].Err = cerr
			default:
				err = cerr
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	var created []int
	for lo := 0; lo < len(todo); lo += MaxBatch {
		part := todo[lo:min(lo+MaxBatch, len(todo))]
		msgs := make([]*nats.Msg, 0, len(part))
		for _, i := range part {
			data, eerr := encode(items[i].User)
			if eerr != nil {
				return nil, eerr
			}
			msgs = append(msgs, kvMsg(subject.BucketUsers, items[i].User.ID, data, items[i].UserSeq))
		}
		first, berr := r.atomicPublish(ctx, msgs)
		if berr == nil {
			for k, i := range part {
				res[i].After.Revision = first + uint64(k)
				res[i].Changed = true
				created = append(created, i)
			}
			continue
		}
		if !errors.Is(berr, ErrBatchRefused) {
			return nil, berr
		}
		for _, i := range part {
			ok, cerr := r.createOne(ctx, items[i].User, &res[i])
			if cerr != nil {
				return nil, cerr
			}
			if ok {
				created = append(created, i)
			}
		}
	}
	for _, i := range created {
		if u := items[i].User; hasCounters(u.Usage) {
			if err := r.setUsage(ctx, u.ID, func(c *user.Usage) { *c = u.Usage }); err != nil {
				return nil, err
			}
		}
	}
	envs := make([]event.Envelope, 0, len(created))
	subs := make([]string, 0, len(created))
	for _, i := range created {
		env, eerr := r.envelope(event.UserCreated, res[i].After, "", "")
		if eerr != nil {
			return nil, eerr
		}
		envs = append(envs, env)
		subs = append(subs, subject.UserEvent(res[i].After.ID))
	}
	return res, r.publishEvents(ctx, subs, envs)
}

// createOne stores one user of a refused batch: created now, or found
// already there under its id (an earlier run). It reports whether the
// user's created event is still to be published.
func (r *Registry) createOne(ctx context.Context, u user.User, res *Result) (bool, error) {
	data, err := encode(u)
	if err != nil {
		return false, err
	}
	rev, err := r.users.Create(ctx, u.ID, data)
	switch {
	case err == nil:
		res.After.Revision, res.Changed = rev, true
		return true, nil
	case !errors.Is(err, jetstream.ErrKeyExists):
		return false, unavailable(err, "storing user %s", u.ID)
	}
	got, err := r.get(ctx, u.ID)
	if err != nil {
		return false, err
	}
	res.After = got
	// Published again only while untouched since, under the same id, so
	// the stream's duplicate window drops it if it was stored.
	return got.UpdatedAt.Equal(got.CreatedAt), nil
}

// Change is what an Edit did to a user: the event to publish (empty for
// none), whether to write at all, and for status changes the previous
// status and the reason.
type Change struct {
	Event    event.Type
	Write    bool
	Previous user.Status
	Reason   string
}

// Edit changes a user in place, as of now.
type Edit func(u *user.User, now time.Time) (Change, error)

// BulkEdit applies edit to each of the users given (as last read, with
// their revisions) and stores the changed ones with a compare-and-set on
// those revisions. A user changed since is re-read and edited again, so
// edit must be idempotent (set, not toggle). An Invalid error from edit
// fails that item.
func (r *Registry) BulkEdit(ctx context.Context, current []user.User, edit Edit) ([]Result, error) {
	r.reenable(ctx)
	res := make([]Result, len(current))
	var changes []Change
	var written []int
	for lo := 0; lo < len(current); lo += MaxBatch {
		hi := min(lo+MaxBatch, len(current))
		now := r.now()
		var msgs []*nats.Msg
		var part []int
		for i := lo; i < hi; i++ {
			res[i].Before = current[i]
			next := current[i]
			c, err := edit(&next, now)
			if err != nil {
				if errs.ClassOf(err) != errs.Invalid {
					return nil, err
				}
				res[i].Err = err
				continue
			}
			res[i].After = next
			if !c.Write {
				continue
			}
			next.UpdatedAt = now
			res[i].After = next
			data, err := encode(next)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, kvMsg(subject.BucketUsers, next.ID, data, current[i].Revision))
			part = append(part, i)
			changes = append(changes, c)
		}
		first, err := r.atomicPublish(ctx, msgs)
		if err == nil {
			for k, i := range part {
				res[i].After.Revision = first + uint64(k)
				res[i].Changed = true
			}
			written = append(written, part...)
			continue
		}
		if !errors.Is(err, ErrBatchRefused) {
			return nil, err
		}
		changes = changes[:len(changes)-len(part)]
		for _, i := range part {
			c, err := r.editOne(ctx, current[i].ID, edit, &res[i])
			if err != nil {
				return nil, err
			}
			if res[i].Changed {
				written = append(written, i)
				changes = append(changes, c)
			}
		}
	}
	for _, i := range written {
		if err := r.carryUsage(ctx, res[i].Before, res[i].After); err != nil {
			return nil, err
		}
	}
	envs := make([]event.Envelope, 0, len(written))
	subs := make([]string, 0, len(written))
	for k, i := range written {
		c := changes[k]
		if c.Event == "" {
			continue
		}
		env, err := r.envelope(c.Event, res[i].After, c.Previous, c.Reason)
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
		subs = append(subs, subject.UserEvent(res[i].After.ID))
	}
	return res, r.publishEvents(ctx, subs, envs)
}

// hasCounters reports whether c holds traffic worth an entry in the usage
// bucket (a reset time alone does not: the creation time stands in).
func hasCounters(c user.Usage) bool {
	return c.UsedUp != 0 || c.UsedDown != 0 || c.LifetimeUp != 0 || c.LifetimeDown != 0 ||
		!c.LastSeenAt.IsZero() || !c.FirstUsedAt.IsZero() || len(c.Windows) > 0
}

// carryUsage stores what an edit changed of a user's counters (a traffic
// reset) in the usage bucket; the users bucket holds no counters.
func (r *Registry) carryUsage(ctx context.Context, before, after user.User) error {
	b, a := before.Usage, after.Usage
	if b.UsedUp == a.UsedUp && b.UsedDown == a.UsedDown && b.ResetAt.Equal(a.ResetAt) {
		return nil
	}
	return r.setUsage(ctx, after.ID, func(c *user.Usage) {
		c.UsedUp, c.UsedDown, c.ResetAt = a.UsedUp, a.UsedDown, a.ResetAt
	})
}

// editOne re-reads one user and applies edit with a compare-and-set,
// retrying when another writer gets in first.
func (r *Registry) editOne(ctx context.Context, id string, edit Edit, res *Result) (Change, error) {
	for range maxCASAttempts {
		u, err := r.get(ctx, id)
		if errs.ClassOf(err) == errs.NotFound {
			res.Err = err
			return Change{}, nil
		}
		if err != nil {
			return Change{}, err
		}
		now := r.now()
		next := u
		c, err := edit(&next, now)
		if err != nil {
			if errs.ClassOf(err) != errs.Invalid {
				return Change{}, err
			}
			res.Err = err
			return Change{}, nil
		}
		res.Before, res.After = u, next
		if !c.Write {
			return c, nil
		}
		next.UpdatedAt = now
		data, err := encode(next)
		if err != nil {
			return Change{}, err
		}
		rev, err := r.users.Update(ctx, id, data, u.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return Change{}, unavailable(err, "storing user %s", id)
		}
		next.Revision = rev
		res.After, res.Changed = next, true
		return c, nil
	}
	return Change{}, errs.Wrap(errs.Conflict, ErrStale, "user %s keeps changing; retry", id)
}

// BulkDelete deletes the users given (as last read) and releases their
// names. A user already gone counts as deleted (an earlier run of the same
// batch, or someone else).
func (r *Registry) BulkDelete(ctx context.Context, current []user.User) ([]Result, error) {
	r.reenable(ctx)
	res := make([]Result, len(current))
	var deleted []int
	for lo := 0; lo < len(current); lo += MaxBatch {
		hi := min(lo+MaxBatch, len(current))
		msgs := make([]*nats.Msg, 0, hi-lo)
		for i := lo; i < hi; i++ {
			res[i].Before = current[i]
			msgs = append(msgs, kvDelMsg(subject.BucketUsers, current[i].ID, current[i].Revision))
		}
		first, err := r.atomicPublish(ctx, msgs)
		if err == nil {
			names := make([]*nats.Msg, 0, hi-lo)
			for i := lo; i < hi; i++ {
				res[i].UserSeq, res[i].Changed = first+uint64(i-lo), true
				names = append(names, kvDelMsg(subject.BucketUserNames, NameKey(current[i].Name), 0))
				deleted = append(deleted, i)
			}
			nfirst, err := r.atomicPublish(ctx, names)
			if err == nil {
				for i := lo; i < hi; i++ {
					res[i].NameSeq = nfirst + uint64(i-lo)
				}
				continue
			}
			if !errors.Is(err, ErrBatchRefused) {
				return nil, err
			}
			for i := lo; i < hi; i++ {
				r.releaseName(ctx, current[i].Name, current[i].ID)
			}
			continue
		}
		if !errors.Is(err, ErrBatchRefused) {
			return nil, err
		}
		for i := lo; i < hi; i++ {
			if err := r.deleteOne(ctx, current[i].ID, &res[i]); err != nil {
				return nil, err
			}
			if res[i].Changed {
				deleted = append(deleted, i)
			}
		}
	}
	for _, i := range deleted {
		// Users that never had traffic have no counters to drop.
		if hasCounters(res[i].Before.Usage) {
			r.dropUsage(ctx, res[i].Before.ID)
		}
	}
	envs := make([]event.Envelope, 0, len(deleted))
	subs := make([]string, 0, len(deleted))
	for _, i := range deleted {
		u := res[i].Before
		u.Revision = res[i].UserSeq
		env, err := r.envelope(event.UserDeleted, u, "", "")
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
		subs = append(subs, subject.UserEvent(u.ID))
	}
	return res, r.publishEvents(ctx, subs, envs)
}

// deleteOne deletes one user of a refused batch at its latest revision.
func (r *Registry) deleteOne(ctx context.Context, id string, res *Result) error {
	for range maxCASAttempts {
		u, err := r.get(ctx, id)
		if errs.ClassOf(err) == errs.NotFound {
			if m, err := r.usersStream.GetLastMsgForSubject(ctx, kvSubject(subject.BucketUsers, id)); err == nil {
				res.UserSeq = m.Sequence
			}
			return nil
		}
		if err != nil {
			return err
		}
		res.Before = u
		rev, err := r.deleteEntry(ctx, id, u.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return unavailable(err, "deleting user %s", id)
		}
		r.releaseName(ctx, u.Name, u.ID)
		res.UserSeq, res.Changed = rev, true
		return nil
	}
	return errs.Wrap(errs.Conflict, ErrStale, "user %s keeps changing; retry", id)
}

// envelope builds the event of a change at u.Revision, with id
// "<id>:<revision>", without credentials.
func (r *Registry) envelope(typ event.Type, u user.User, prev user.Status, reason string) (event.Envelope, error) {
	return event.New(typ, u.ID+":"+strconv.FormatUint(u.Revision, 10), r.opts.Source,
		user.Event{User: u.Redacted(), PreviousStatus: prev, Reason: reason})
}

// publishEvents stores events on EVENTS in atomic batches; a refused batch
// (one of its ids was stored by an earlier run) is published one by one,
// and the duplicate window drops what is already there.
func (r *Registry) publishEvents(ctx context.Context, subs []string, envs []event.Envelope) error {
	for lo := 0; lo < len(envs); lo += MaxBatch {
		hi := min(lo+MaxBatch, len(envs))
		msgs := make([]*nats.Msg, 0, hi-lo)
		for i := lo; i < hi; i++ {
			data, err := json.Marshal(envs[i])
			if err != nil {
				return fmt.Errorf("encoding event %s: %w", envs[i].ID, err)
			}
			m := nats.NewMsg(subs[i])
			m.Data = data
			m.Header.Set(event.Header, string(envs[i].Type))
			m.Header.Set(jetstream.MsgIDHeader, envs[i].ID)
			bus.Inject(ctx, m.Header)
			msgs = append(msgs, m)
		}
		_, err := r.atomicPublish(ctx, msgs)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrBatchRefused) {
			return err
		}
		for i := lo; i < hi; i++ {
			if _, err := bus.PublishEvent(ctx, r.js, subs[i], envs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
