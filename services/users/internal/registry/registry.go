// Package registry is the user registry's core: it creates, changes and
// deletes users in the users bucket, keeps names unique through the
// user_names bucket, applies usage records and enforces limits, and
// publishes an event for every change. Every write is a compare-and-set on
// the KV revision, so any number of replicas can run it side by side.
//
// Names: a create first claims the lowercased name with an atomic KV Create
// holding the user id, then writes the user. A claim whose user does not
// exist (a crash between claim and write) or no longer carries that name
// (a crash in the middle of a rename or delete) is stale; after a grace
// period longer than any request, anyone may take it over with a
// compare-and-set. A writer that was stalled past the grace period checks
// its claim after writing and undoes its write if it lost the claim.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Sentinel errors of conditions this package owns. Each is wrapped in an
// error of the right class.
var (
	// ErrNameTaken: another user has the name.
	ErrNameTaken = errors.New("name is taken")
	// ErrStale: the expected revision is not the current one.
	ErrStale = errors.New("revision is stale")
	// ErrDeleted: the user an idempotency key created was deleted since.
	ErrDeleted = errors.New("user was deleted")
)

// maxCASAttempts bounds read-modify-write retries when another writer
// keeps winning; each attempt re-reads the latest revision.
const maxCASAttempts = 8

// Options tunes a Registry. Zero values pick the defaults.
type Options struct {
	// ClaimGrace is how old a stale name claim must be before another
	// create may take it over (default 30s). It must exceed the longest
	// request.
	ClaimGrace time.Duration
	// Source names the publisher in events (default "users").
	Source string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Usage bounds usage records (default: usage.DefaultMaxRate).
	Usage Limits
}

// Registry is the core. It holds no user state of its own: everything is
// read from and written to JetStream, so it is safe to use from many
// goroutines and many processes.
type Registry struct {
	js      jetstream.JetStream
	users   jetstream.KeyValue
	usage   jetstream.KeyValue
	names   jetstream.KeyValue
	idem    jetstream.KeyValue
	servers jetstream.KeyValue
	status  jetstream.KeyValue
	enrolls jetstream.KeyValue
	// usersStream is the stream behind the users bucket, read for the
	// revision of a deletion.
	usersStream jetstream.Stream
	log         *slog.Logger
	opts        Options
	// atomicOff is set when the server refused a batch because a stream
	// does not allow atomic publish; the next bulk write enables it.
	atomicOff atomic.Bool
}

// Open binds a registry to the buckets (which must be provisioned).
func Open(ctx context.Context, js jetstream.JetStream, log *slog.Logger, opts Options) (*Registry, error) {
	if opts.ClaimGrace <= 0 {
		opts.ClaimGrace = 30 * time.Second
	}
	if opts.Source == "" {
		opts.Source = "users"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Usage.MaxRate == 0 {
		opts.Usage.MaxRate = usage.DefaultMaxRate
	}
	r := &Registry{js: js, log: log, opts: opts}
	for _, b := range []struct {
		name string
		kv   *jetstream.KeyValue
	}{
		{subject.BucketUsers, &r.users},
		{subject.BucketUsage, &r.usage},
		{subject.BucketUserNames, &r.names},
		{subject.BucketUserIdempotency, &r.idem},
		{subject.BucketServers, &r.servers},
		{subject.BucketServerStatus, &r.status},
		{subject.BucketEnrollments, &r.enrolls},
	} {
		kv, err := js.KeyValue(ctx, b.name)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", b.name)
		}
		*b.kv = kv
	}
	st, err := js.Stream(ctx, kvStream(subject.BucketUsers))
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening stream of bucket %s", subject.BucketUsers)
	}
	r.usersStream = st
	return r, nil
}

// Users is the users bucket, for readers that watch it.
func (r *Registry) Users() jetstream.KeyValue { return r.users }

// Usage is the usage bucket (counters of each user), for readers that
// watch it.
func (r *Registry) Usage() jetstream.KeyValue { return r.usage }

func (r *Registry) now() time.Time { return r.opts.Now().UTC().Round(0) }

// kvStream and kvSubject follow the KV layout of JetStream (ADR-8).
func kvStream(bucket string) string       { return "KV_" + bucket }
func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

func unavailable(err error, format string, args ...any) error {
	return errs.Wrap(errs.Unavailable, err, format, args...)
}

// Get returns the user with id.
func (r *Registry) Get(ctx context.Context, id string) (user.User, error) {
	if !ValidID(id) {
		return user.User{}, errs.Field("id", "must be a user id (UUIDv4)")
	}
	return r.get(ctx, id)
}

func (r *Registry) get(ctx context.Context, id string) (user.User, error) {
	u, _, err := r.getWithUsage(ctx, id)
	return u, err
}

// getWithUsage reads a user's record and its counters from the usage
// bucket, and returns the usage entry's revision (0 when it has none yet)
// for a compare-and-set.
func (r *Registry) getWithUsage(ctx context.Context, id string) (user.User, uint64, error) {
	e, err := r.users.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return user.User{}, 0, errs.New(errs.NotFound, "user %s not found", id)
	}
	if err != nil {
		return user.User{}, 0, unavailable(err, "reading user %s", id)
	}
	u, err := Decode(e)
	if err != nil {
		return user.User{}, 0, err
	}
	c, rev, err := r.readUsage(ctx, id)
	if err != nil {
		return user.User{}, 0, err
	}
	if rev != 0 {
		u.Usage = c
	}
	return u, rev, nil
}

// readUsage returns a user's counters and their revision (0 when the user
// has none yet).
func (r *Registry) readUsage(ctx context.Context, id string) (user.Usage, uint64, error) {
	e, err := r.usage.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return user.Usage{}, 0, nil
	}
	if err != nil {
		return user.Usage{}, 0, unavailable(err, "reading usage of user %s", id)
	}
	var c user.Usage
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return user.Usage{}, 0, errs.Wrap(errs.Internal, err, "decoding usage of user %s", id)
	}
	return c, e.Revision(), nil
}

// writeUsage stores a user's counters with a compare-and-set on rev (0:
// the user has none yet), returning jetstream.ErrKeyRevisionMismatch (or
// ErrKeyExists) when another writer got in first.
func (r *Registry) writeUsage(ctx context.Context, id string, c user.Usage, rev uint64) error {
	data, err := json.Marshal(c)
	if err != nil {
		return errs.Wrap(errs.Internal, err, "encoding usage of user %s", id)
	}
	if rev == 0 {
		_, err = r.usage.Create(ctx, id, data)
	} else {
		_, err = r.usage.Update(ctx, id, data, rev)
	}
	return err
}

// setUsage changes a user's counters with a compare-and-set, re-reading
// when another writer got in first.
func (r *Registry) setUsage(ctx context.Context, id string, mutate func(*user.Usage)) error {
	for range maxCASAttempts {
		c, rev, err := r.readUsage(ctx, id)
		if err != nil {
			return err
		}
		mutate(&c)
		err = r.writeUsage(ctx, id, c, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return unavailable(err, "storing usage of user %s", id)
		}
		return nil
	}
	return errs.Wrap(errs.Conflict, ErrStale, "usage of user %s keeps changing; retry", id)
}

// dropUsage deletes a deleted user's counters. A failure is only logged:
// counters without a user are never read.
func (r *Registry) dropUsage(ctx context.Context, id string) {
	if err := r.usage.Delete(ctx, id); err != nil {
		r.log.Warn("deleting usage of a deleted user", logkey.User, id, logkey.Err, err)
	}
}

// usageEqual reports whether two sets of counters are the same, windows
// included.
func usageEqual(a, b user.Usage) bool {
	return a.UsedUp == b.UsedUp && a.UsedDown == b.UsedDown &&
		a.LifetimeUp == b.LifetimeUp && a.LifetimeDown == b.LifetimeDown &&
		a.LastSeenAt.Equal(b.LastSeenAt) && a.FirstUsedAt.Equal(b.FirstUsedAt) &&
		a.ResetAt.Equal(b.ResetAt) && maps.Equal(a.Windows, b.Windows)
}

// Decode reads a user from its bucket entry and stamps its revision.
func Decode(e jetstream.KeyValueEntry) (user.User, error) {
	var u user.User
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return user.User{}, errs.Wrap(errs.Internal, err, "decoding user %s", e.Key())
	}
	u.Revision = e.Revision()
	return u, nil
}

// encode is a user's record in the users bucket: desired state only. The
// counters live in the usage bucket.
func encode(u user.User) ([]byte, error) {
	u.Revision = 0
	u.Usage = user.Usage{}
	data, err := json.Marshal(u)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encoding user %s", u.ID)
	}
	return data, nil
}

// GetByName returns the user named name, in any case.
func (r *Registry) GetByName(ctx context.Context, name string) (user.User, error) {
	if rule := CheckName(name); rule == NameRule {
		return user.User{}, errs.Field("name", rule)
	}
	key := NameKey(name)
	e, err := r.names.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return user.User{}, errs.New(errs.NotFound, "no user named %s", name)
	}
	if err != nil {
		return user.User{}, unavailable(err, "reading name %s", key)
	}
	u, err := r.get(ctx, string(e.Value()))
	if errs.ClassOf(err) == errs.NotFound || err == nil && NameKey(u.Name) != key {
		// A claim left by an unfinished create, rename or delete.
		return user.User{}, errs.New(errs.NotFound, "no user named %s", name)
	}
	return u, err
}

// Create validates req and stores a new user with fresh credentials. With
// an idempotency key, a retry returns the user the first attempt created
// (finishing it if the first attempt died half-way).
func (r *Registry) Create(ctx context.Context, req user.CreateRequest) (user.User, error) {
	now := r.now()
	id, err := newID()
	if err != nil {
		return user.User{}, err
	}
	u, err := NewUser(req, id, now)
	if err != nil {
		return user.User{}, err
	}
	if req.IdempotencyKey != "" {
		prev, err := r.rememberKey(ctx, req.IdempotencyKey, id)
		if err != nil {
			return user.User{}, err
		}
		if prev != id {
			existing, done, err := r.createdBefore(ctx, prev)
			if done || err != nil {
				return existing, err
			}
			// The first attempt stopped before writing the user: finish it
			// under its id. Concurrent retries all write the same key with
			// an atomic Create, so exactly one of them stores it.
			u.ID = prev
			for _, c := range []*user.Proxy{u.Credentials.SOCKS5, u.Credentials.HTTP} {
				if c != nil {
					c.Username = prev
				}
			}
		}
	}
	u.TraceParent = traceParent(ctx)
	claimed := time.Now()
	if err := r.claimName(ctx, u.Name, u.ID); err != nil {
		return user.User{}, err
	}
	data, err := encode(u)
	if err != nil {
		return user.User{}, err
	}
	rev, err := r.users.Create(ctx, u.ID, data)
	if errors.Is(err, jetstream.ErrKeyExists) && req.IdempotencyKey != "" {
		return r.get(ctx, u.ID)
	}
	if err != nil {
		r.releaseName(ctx, u.Name, u.ID)
		return user.User{}, unavailable(err, "storing user %s", u.ID)
	}
	u.Revision = rev
	if time.Since(claimed) > r.opts.ClaimGrace/4 {
		// Stalled long enough that the claim may have been taken over.
		if holder, err := r.nameHolder(ctx, u.Name); err == nil && holder != u.ID {
			r.undoCreate(ctx, u)
			return user.User{}, errs.Wrap(errs.Conflict, ErrNameTaken, "a user named %s already exists", u.Name)
		}
	}
	if err := r.publish(ctx, event.UserCreated, u, "", ""); err != nil {
		return u, err
	}
	return u, nil
}

// NewID returns a new user id (a UUIDv4 from crypto/rand).
func NewID() (string, error) { return newID() }

func newID() (string, error) {
	id, err := uuid.NewRandomFromReader(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generating user id: %w", err)
	}
	return id.String(), nil
}

// rememberKey stores key -> id unless the key is already known, and
// returns the id it maps to.
func (r *Registry) rememberKey(ctx context.Context, key, id string) (string, error) {
	sum := sha256.Sum256([]byte(key))
	k := hex.EncodeToString(sum[:])
	for range maxCASAttempts {
		if _, err := r.idem.Create(ctx, k, []byte(id)); err == nil {
			return id, nil
		} else if !errors.Is(err, jetstream.ErrKeyExists) {
			return "", unavailable(err, "storing idempotency key")
		}
		e, err := r.idem.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired in between
		}
		if err != nil {
			return "", unavailable(err, "reading idempotency key")
		}
		return string(e.Value()), nil
	}
	return "", errs.New(errs.Unavailable, "idempotency key keeps changing; retry")
}

// createdBefore finds the user an earlier create with the same
// idempotency key made under id. done is false when that create never got
// as far as writing the user (it died, or is still running), so the caller
// may finish it. A user deleted since is not brought back.
func (r *Registry) createdBefore(ctx context.Context, id string) (u user.User, done bool, err error) {
	for range maxCASAttempts {
		u, err := r.get(ctx, id)
		if errs.ClassOf(err) != errs.NotFound {
			return u, true, err
		}
		m, err := r.usersStream.GetLastMsgForSubject(ctx, kvSubject(subject.BucketUsers, id))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return user.User{}, false, nil
		case err != nil:
			return user.User{}, true, unavailable(err, "reading history of user %s", id)
		case m.Header.Get("KV-Operation") != "":
			return user.User{}, true, errs.Wrap(errs.Conflict, ErrDeleted, "the user created with this idempotency key (%s) was deleted", id)
		}
		// Written between the two reads: read it again.
	}
	return user.User{}, true, errs.New(errs.Unavailable, "user %s keeps changing; retry", id)
}

// undoCreate deletes a user that lost its name claim while stalled.
func (r *Registry) undoCreate(ctx context.Context, u user.User) {
	if _, err := r.deleteEntry(ctx, u.ID, u.Revision); err != nil {
		r.log.Error("undoing create after losing name claim", logkey.User, u.ID, logkey.Err, err)
	}
}

// nameHolder returns the id holding name's claim ("" when none).
func (r *Registry) nameHolder(ctx context.Context, name string) (string, error) {
	e, err := r.names.Get(ctx, NameKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", unavailable(err, "reading name %s", name)
	}
	return string(e.Value()), nil
}

// claimName makes id the holder of name, taking over a stale claim.
func (r *Registry) claimName(ctx context.Context, name, id string) error {
	key := NameKey(name)
	for range maxCASAttempts {
		_, err := r.names.Create(ctx, key, []byte(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return unavailable(err, "claiming name %s", key)
		}
		e, err := r.names.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released in between
		}
		if err != nil {
			return unavailable(err, "reading name %s", key)
		}
		holder := string(e.Value())
		if holder == id {
			return nil
		}
		stale, err := r.staleClaim(ctx, key, holder, e.Created())
		if err != nil {
			return err
		}
		if !stale {
			return errs.Wrap(errs.Conflict, ErrNameTaken, "a user named %s already exists", name)
		}
		if _, err := r.names.Update(ctx, key, []byte(id), e.Revision()); err == nil {
			r.log.Warn("took over stale name claim", logkey.User, id, logkey.Detail, fmt.Sprintf("name %s was held by %s", key, holder))
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return unavailable(err, "taking over name %s", key)
		}
	}
	return errs.Wrap(errs.Conflict, ErrNameTaken, "name %s is contended", name)
}

// staleClaim reports whether a claim by holder, made at claimedAt, may be
// taken over: it is older than the grace period and its user does not
// exist or has another name.
func (r *Registry) staleClaim(ctx context.Context, key, holder string, claimedAt time.Time) (bool, error) {
	if r.opts.Now().Sub(claimedAt) < r.opts.ClaimGrace {
		return false, nil
	}
	if !ValidID(holder) {
		return true, nil
	}
	u, err := r.get(ctx, holder)
	switch {
	case errs.ClassOf(err) == errs.NotFound:
		return true, nil
	case err != nil:
		return false, err
	}
	return NameKey(u.Name) != key, nil
}

// releaseName drops id's claim on name, if it still holds it. Failures are
// only logged: a leftover claim is stale and will be taken over.
func (r *Registry) releaseName(ctx context.Context, name, id string) {
	key := NameKey(name)
	e, err := r.names.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return
	}
	if err == nil && string(e.Value()) == id {
		err = r.names.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return // someone else holds it now
		}
	}
	if err != nil {
		r.log.Warn("releasing name", logkey.User, id, logkey.Detail, key, logkey.Err, err)
	}
}

// publish stores the event of a change at u.Revision, with message id
// "<id>:<revision>".
func (r *Registry) publish(ctx context.Context, typ event.Type, u user.User, prev user.Status, reason string) error {
	return r.publishAs(ctx, typ, u, prev, reason, u.ID+":"+fmt.Sprint(u.Revision))
}

// publishAs stores the event of a change with message id id.
func (r *Registry) publishAs(ctx context.Context, typ event.Type, u user.User, prev user.Status, reason, id string) error {
	env, err := event.New(typ, id, r.opts.Source, user.Event{User: u.Redacted(), PreviousStatus: prev, Reason: reason})
	if err != nil {
		return err
	}
	if _, err := bus.PublishEvent(ctx, r.js, subject.UserEvent(u.ID), env); err != nil {
		return fmt.Errorf("user %s saved at revision %d, but publishing its event: %w", u.ID, u.Revision, err)
	}
	return nil
}

// change is what a mutation did to a user.
type change struct {
	// typ is the event to publish; empty for a write without an event
	// (usage counters). write is false when nothing changed.
	typ    event.Type
	write  bool
	prev   user.Status
	reason string
}

// modify reads the user, applies mutate and writes the result with a
// compare-and-set, re-reading and re-applying when another writer got in
// first, unless expected names the revision the caller saw (then it is a
// Conflict).
func (r *Registry) modify(ctx context.Context, id string, expected uint64, mutate func(u *user.User, now time.Time) (change, error)) (user.User, error) {
	if !ValidID(id) {
		return user.User{}, errs.Field("id", "must be a user id (UUIDv4)")
	}
	for range maxCASAttempts {
		u, usageRev, err := r.getWithUsage(ctx, id)
		if err != nil {
			return user.User{}, err
		}
		if expected != 0 && u.Revision != expected {
			return user.User{}, errs.Wrap(errs.Conflict, ErrStale, "user %s is at revision %d, not %d", id, u.Revision, expected)
		}
		now := r.now()
		next := u
		c, err := mutate(&next, now)
		if err != nil || !c.write {
			return u, err
		}
		// Counters first: a crash before the record is written leaves a
		// state that the next Settle completes (the status follows from
		// the counters), never counters lost behind a status.
		stored := u.Usage
		if usageRev == 0 {
			// No counters in the usage bucket yet: whatever the record
			// carried (a record not yet migrated) is written there.
			stored = user.Usage{}
		}
		if !usageEqual(stored, next.Usage) {
			err := r.writeUsage(ctx, id, next.Usage, usageRev)
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return user.User{}, unavailable(err, "storing usage of user %s", id)
			}
		}
		before, _ := encode(u)
		after, _ := encode(next)
		if string(before) == string(after) {
			// Only the counters changed: the record (and every node's view
			// of it) stays as it is.
			if c.typ != "" {
				if err := r.publishAs(ctx, c.typ, next, c.prev, c.reason, fmt.Sprintf("%s:%d:usage:%d", id, next.Revision, usageRev+1)); err != nil {
					return next, err
				}
			}
			return next, nil
		}
		next.UpdatedAt = now
		next.TraceParent = traceParent(ctx)
		data, err := encode(next)
		if err != nil {
			return user.User{}, err
		}
		rev, err := r.users.Update(ctx, id, data, u.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if expected != 0 {
				return user.User{}, errs.Wrap(errs.Conflict, ErrStale, "user %s changed after revision %d", id, expected)
			}
			continue
		}
		if err != nil {
			return user.User{}, unavailable(err, "storing user %s", id)
		}
		next.Revision = rev
		if c.typ != "" {
			if err := r.publish(ctx, c.typ, next, c.prev, c.reason); err != nil {
				return next, err
			}
		}
		return next, nil
	}
	return user.User{}, errs.Wrap(errs.Conflict, ErrStale, "user %s keeps changing; retry", id)
}

// Update applies a partial update. A rename claims the new name before the
// write and releases the old one after it.
func (r *Registry) Update(ctx context.Context, req user.UpdateRequest) (user.User, error) {
	if err := CheckUpdate(req); err != nil {
		return user.User{}, err
	}
	var claimed, released string
	u, err := r.modify(ctx, req.ID, req.ExpectedRevision, func(u *user.User, now time.Time) (change, error) {
		old := u.Name
		if err := ApplyUpdate(u, req, now); err != nil {
			return change{}, err
		}
		o := Settle(u, now)
		if NameKey(u.Name) != NameKey(old) {
			if err := r.claimName(ctx, u.Name, u.ID); err != nil {
				return change{}, err
			}
			claimed, released = u.Name, old
		} else {
			claimed, released = "", ""
		}
		return change{typ: event.UserUpdated, write: true, prev: o.Previous, reason: o.Reason}, nil
	})
	switch {
	case err == nil && released != "":
		r.releaseName(ctx, released, req.ID)
	case err != nil && claimed != "" && u.ID == "":
		r.releaseName(ctx, claimed, req.ID)
	}
	return u, err
}

// Delete removes a user and releases its name. The reply carries the
// revision of the deletion, which is also its event's id.
func (r *Registry) Delete(ctx context.Context, req user.RevisionRequest) (user.DeleteResponse, error) {
	if !ValidID(req.ID) {
		return user.DeleteResponse{}, errs.Field("id", "must be a user id (UUIDv4)")
	}
	for range maxCASAttempts {
		u, err := r.get(ctx, req.ID)
		if err != nil {
			return user.DeleteResponse{}, err
		}
		if req.ExpectedRevision != 0 && u.Revision != req.ExpectedRevision {
			return user.DeleteResponse{}, errs.Wrap(errs.Conflict, ErrStale, "user %s is at revision %d, not %d", u.ID, u.Revision, req.ExpectedRevision)
		}
		rev, err := r.deleteEntry(ctx, u.ID, u.Revision)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if req.ExpectedRevision != 0 {
				return user.DeleteResponse{}, errs.Wrap(errs.Conflict, ErrStale, "user %s changed after revision %d", u.ID, req.ExpectedRevision)
			}
			continue
		}
		if err != nil {
			return user.DeleteResponse{}, unavailable(err, "deleting user %s", u.ID)
		}
		r.releaseName(ctx, u.Name, u.ID)
		r.dropUsage(ctx, u.ID)
		u.Revision = rev
		resp := user.DeleteResponse{ID: u.ID, Revision: rev}
		return resp, r.publish(ctx, event.UserDeleted, u, "", "")
	}
	return user.DeleteResponse{}, errs.Wrap(errs.Conflict, ErrStale, "user %s keeps changing; retry", req.ID)
}

// deleteEntry writes a KV delete marker for id if its revision is still
// rev, and returns the marker's revision (kv.Delete does not report it).
func (r *Registry) deleteEntry(ctx context.Context, id string, rev uint64) (uint64, error) {
	m := nats.NewMsg(kvSubject(subject.BucketUsers, id))
	m.Header.Set("KV-Operation", "DEL")
	ack, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("deleting user %s: %w", id, jetstream.ErrKeyRevisionMismatch)
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// SetEnabled disables a user, or enables a disabled one (its status is
// then recomputed from its limits).
func (r *Registry) SetEnabled(ctx context.Context, req user.RevisionRequest, enabled bool) (user.User, error) {
	return r.modify(ctx, req.ID, req.ExpectedRevision, func(u *user.User, now time.Time) (change, error) {
		prev := u.Status
		switch {
		case !enabled && prev != user.StatusDisabled:
			u.Status = user.StatusDisabled
			return change{typ: event.UserStatusChanged, write: true, prev: prev, reason: user.ReasonDisabled}, nil
		case enabled && prev == user.StatusDisabled:
			u.Status = user.StatusActive
			Settle(u, now)
			return change{typ: event.UserStatusChanged, write: true, prev: prev, reason: user.ReasonEnabled}, nil
		}
		return change{}, nil
	})
}

// ResetTraffic restarts a user's counters (a limited user becomes active).
func (r *Registry) ResetTraffic(ctx context.Context, req user.RevisionRequest) (user.User, error) {
	return r.modify(ctx, req.ID, req.ExpectedRevision, func(u *user.User, now time.Time) (change, error) {
		u.Usage.UsedUp, u.Usage.UsedDown = 0, 0
		u.Usage.ResetAt = now
		o := Settle(u, now)
		reason := ""
		if o.Reason != "" {
			reason = user.ReasonTrafficReset
		}
		return change{typ: event.UserTrafficReset, write: true, prev: o.Previous, reason: reason}, nil
	})
}

// Rotate replaces the credentials of the listed protocols (all of the
// user's when none are listed).
func (r *Registry) Rotate(ctx context.Context, req user.RotateRequest) (user.User, error) {
	return r.modify(ctx, req.ID, req.ExpectedRevision, func(u *user.User, now time.Time) (change, error) {
		protos := req.Protocols
		if len(protos) == 0 {
			protos = u.Protocols
		}
		for _, p := range protos {
			if !u.Has(p) {
				return change{}, errs.Field("protocols", fmt.Sprintf("user does not have protocol %q", truncate(string(p))))
			}
		}
		method := ""
		if u.Credentials.Shadowsocks != nil {
			method = u.Credentials.Shadowsocks.Method
		}
		creds := u.Credentials
		if err := credentials.Generate(&creds, u.ID, method, protos); err != nil {
			return change{}, err
		}
		u.Credentials = creds
		return change{typ: event.UserCredentialsRotated, write: true}, nil
	})
}

// Enforce settles one user at the current time: expiry, quota and periodic
// reset. It writes (and publishes) only when something changed.
func (r *Registry) Enforce(ctx context.Context, id string) (user.User, error) {
	return r.modify(ctx, id, 0, func(u *user.User, now time.Time) (change, error) {
		o := Settle(u, now)
		return settled(o), nil
	})
}

// settled maps a Settle outcome to the change to record.
func settled(o Outcome) change {
	switch {
	case o.Reason != "":
		return change{typ: event.UserStatusChanged, write: true, prev: o.Previous, reason: o.Reason}
	case o.Reset:
		return change{typ: event.UserTrafficReset, write: true, prev: o.Previous}
	}
	return change{}
}

// Due reports whether Enforce would change u at now, without I/O, so the
// enforcement loop can skip the rest.
func Due(u user.User, now time.Time) bool {
	return Settle(&u, now).Changed()
}

// traceParent is the W3C traceparent of ctx's span, or "" without one.
func traceParent(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}
