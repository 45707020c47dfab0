// Package servers is the servers registry: the desired servers in the
// servers bucket (node, engine, inbounds with their generated keys) that
// each node's agent reconciles. It creates, reads, lists, changes and
// deletes them and publishes a server.* event for every change; the agent
// of a server's node writes its Status.
//
// Names are unique per node (regardless of case) and a port is used by at
// most one inbound of all the servers of a node. A write that takes a name
// or a port (a create, a rename, new ports) reads every server and is
// stored only if nothing in the bucket changed since (an expected last
// sequence over the whole bucket's subjects), so two replicas can never
// both take one port; other writes are a compare-and-set on the server's
// own revision. Either way a write never clobbers a newer Status an agent
// wrote: it re-reads and re-applies instead.
package servers

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Sentinel errors of conditions this package owns, each wrapped in an
// error of class Conflict.
var (
	// ErrTaken: another server on the node has the name or a port.
	ErrTaken = errors.New("name or port is taken on the node")
	// ErrStale: the expected revision is not the current one.
	ErrStale = errors.New("revision is stale")
)

// maxAttempts bounds read-modify-write retries when other writers keep
// winning; each attempt reads again.
const maxAttempts = 8

// Options tunes a Registry. Zero values pick the defaults.
type Options struct {
	// Source names the publisher in events (default "users").
	Source string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Registry is the core. It keeps no state of its own, so it is safe to use
// from many goroutines and many processes.
type Registry struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	status jetstream.KeyValue
	log    *slog.Logger
	opts   Options
}

// Open binds a registry to the servers bucket (which must be provisioned).
func Open(ctx context.Context, js jetstream.JetStream, log *slog.Logger, opts Options) (*Registry, error) {
	if opts.Source == "" {
		opts.Source = "users"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	kv, err := js.KeyValue(ctx, subject.BucketServers)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketServers)
	}
	status, err := js.KeyValue(ctx, subject.BucketServerStatus)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketServerStatus)
	}
	return &Registry{js: js, kv: kv, status: status, log: log, opts: opts}, nil
}

func (r *Registry) now() time.Time { return r.opts.Now().UTC().Round(0) }

// kvSubject follows the KV layout of JetStream (ADR-8); allKeys is the
// filter of every key of the bucket.
func kvSubject(key string) string { return "$KV." + subject.BucketServers + "." + key }

var allKeys = kvSubject(">")

func unavailable(err error, format string, args ...any) error {
	return errs.Wrap(errs.Unavailable, err, format, args...)
}

// Decode reads a server from its bucket entry and stamps its revision.
func Decode(e jetstream.KeyValueEntry) (server.Server, error) {
	var s server.Server
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return server.Server{}, errs.Wrap(errs.Internal, err, "decoding server %s", e.Key())
	}
	s.Revision = e.Revision()
	return s, nil
}

// encode is a server's record in the servers bucket: desired state only.
// Its status is its node's report, in the server_status bucket.
func encode(s server.Server) ([]byte, error) {
	s.Revision = 0
	s.Status = server.Status{}
	data, err := json.Marshal(s)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "encoding server %s", s.ID)
	}
	return data, nil
}

// Get returns the server with id.
func (r *Registry) Get(ctx context.Context, req server.GetRequest) (server.Server, error) {
	if !ValidID(req.ID) {
		return server.Server{}, errs.Field("id", IDRule)
	}
	s, err := r.get(ctx, req.ID)
	if err != nil {
		return server.Server{}, err
	}
	s.Status = ReadStatus(ctx, r.status, s)
	return s, nil
}

// ReadStatus returns what s's node reported of it (in the server_status
// bucket), or pending when it has not reported on s's current spec yet or
// the report is not readable. Status is observed state: reading it never
// fails a request.
func ReadStatus(ctx context.Context, kv jetstream.KeyValue, s server.Server) server.Status {
	pending := server.Status{State: server.StatePending}
	e, err := kv.Get(ctx, subject.ServerStatusKey(s.Node, s.ID))
	if err != nil {
		return pending
	}
	var st server.Status
	if err := json.Unmarshal(e.Value(), &st); err != nil || st.State == "" || st.Spec != s.SpecKey() {
		return pending
	}
	return st
}

func (r *Registry) get(ctx context.Context, id string) (server.Server, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return server.Server{}, errs.New(errs.NotFound, "server %s not found", id)
	}
	if err != nil {
		return server.Server{}, unavailable(err, "reading server %s", id)
	}
	return Decode(e)
}

// List returns every server, or those of one node, sorted by node, then
// name, then id.
func (r *Registry) List(ctx context.Context, req server.ListRequest) (server.ListResponse, error) {
	if req.Node != "" && !subject.ValidToken(req.Node) {
		return server.ListResponse{}, errs.Field("node", NodeRule)
	}
	snap, err := r.snapshot(ctx)
	if err != nil {
		return server.ListResponse{}, err
	}
	out := []server.Server{}
	for _, s := range snap.servers {
		if req.Node == "" || s.Node == req.Node {
			s.Status = ReadStatus(ctx, r.status, s)
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b server.Server) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), strings.Compare(NameKey(a.Name), NameKey(b.Name)), strings.Compare(a.ID, b.ID))
	})
	return server.ListResponse{Servers: out}, nil
}

// snapshot is every server in the bucket as of one sequence of its stream.
type snapshot struct {
	// seq is the sequence of the bucket's last message: a write expecting
	// it is stored only if nothing in the bucket changed since.
	seq     uint64
	servers []server.Server
}

// snapshot reads the latest entry of every key. Delete markers count for
// seq but give no server; an entry that does not decode is logged and
// skipped (it blocks nothing).
func (r *Registry) snapshot(ctx context.Context) (snapshot, error) {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return snapshot{}, unavailable(err, "reading servers")
	}
	defer func() { _ = w.Stop() }()
	latest := map[string]jetstream.KeyValueEntry{}
	var snap snapshot
	for done := false; !done; {
		select {
		case e := <-w.Updates():
			if e == nil {
				done = true
				break
			}
			snap.seq = max(snap.seq, e.Revision())
			latest[e.Key()] = e
		case <-ctx.Done():
			return snapshot{}, unavailable(ctx.Err(), "reading servers")
		}
	}
	for _, e := range latest {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		s, err := Decode(e)
		if err != nil {
			r.log.Error("decoding server", logkey.Server, e.Key(), logkey.Err, err)
			continue
		}
		snap.servers = append(snap.servers, s)
	}
	return snap, nil
}

// taken returns a Conflict naming every field of s that clashes with
// another server on its node, or nil.
func taken(s server.Server, others []server.Server) error {
	var fe []errs.FieldError
	for _, o := range others {
		if o.ID == s.ID || o.Node != s.Node {
			continue
		}
		if NameKey(o.Name) == NameKey(s.Name) {
			fe = append(fe, errs.FieldError{Field: "name", Rule: fmt.Sprintf("server %s (%s) on node %s has this name", o.Name, o.ID, o.Node)})
		}
		for i, in := range s.Inbounds {
			for _, oin := range o.Inbounds {
				if oin.Port == in.Port {
					fe = append(fe, errs.FieldError{
						Field: fmt.Sprintf("inbounds[%d].port", i),
						Rule:  fmt.Sprintf("port %d is taken by inbound %s of server %s (%s) on node %s", in.Port, oin.Tag, o.Name, o.ID, o.Node),
					})
				}
			}
		}
	}
	if len(fe) == 0 {
		return nil
	}
	return &errs.Error{Class: errs.Conflict, Msg: "taken on node " + s.Node, Fields: fe, Err: ErrTaken}
}

// claims reports whether next takes a name or port that prev did not have
// on the node, so that writing it must be checked against every server.
func claims(prev, next server.Server) bool {
	if NameKey(prev.Name) != NameKey(next.Name) || prev.Node != next.Node {
		return true
	}
	for _, in := range next.Inbounds {
		if !slices.ContainsFunc(prev.Inbounds, func(p server.Inbound) bool { return p.Port == in.Port }) {
			return true
		}
	}
	return false
}

// errChanged: the bucket (or the key) changed since it was read.
var errChanged = errors.New("changed since read")

// write stores s if the last message on subj (one key, or every key) is
// still at seq, and returns the new revision; errChanged when it is not.
func (r *Registry) write(ctx context.Context, s server.Server, subj string, seq uint64) (uint64, error) {
	data, err := encode(s)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(kvSubject(s.ID))
	m.Data = data
	ack, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequenceForSubject(seq, subj))
	if isWrongLastSeq(err) {
		return 0, errChanged
	}
	if err != nil {
		return 0, unavailable(err, "storing server %s", s.ID)
	}
	return ack.Sequence, nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Create validates req and stores a new server on its node with fresh keys
// and status pending.
func (r *Registry) Create(ctx context.Context, req server.CreateRequest) (server.Server, error) {
	id, err := uuid.NewRandomFromReader(rand.Reader)
	if err != nil {
		return server.Server{}, fmt.Errorf("generating server id: %w", err)
	}
	s, err := New(req, id.String(), r.now())
	if err != nil {
		return server.Server{}, err
	}
	if s.Runtime == "" {
		// The operator's default for the node (vpn runtime switch), named
		// in the record so it stays there whatever the default becomes.
		if s.Runtime, err = r.enrolledDefault(ctx, s.Node); err != nil {
			return server.Server{}, err
		}
	}
	if err := r.checkRuntime(ctx, s); err != nil {
		return server.Server{}, err
	}
	for range maxAttempts {
		snap, err := r.snapshot(ctx)
		if err != nil {
			return server.Server{}, err
		}
		if err := taken(s, snap.servers); err != nil {
			return server.Server{}, err
		}
		rev, err := r.write(ctx, s, allKeys, snap.seq)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return server.Server{}, err
		}
		s.Revision = rev
		r.log.Info("server created", logkey.Server, s.ID, logkey.Node, s.Node)
		return s, r.publish(ctx, event.ServerCreated, s, false)
	}
	return server.Server{}, errs.New(errs.Conflict, "servers keep changing; retry")
}

// Update applies a partial update. Without an expected revision it is
// applied to the latest server, however often others write in between;
// with one, any other write first is a Conflict.
func (r *Registry) Update(ctx context.Context, req server.UpdateRequest) (server.Server, error) {
	if err := CheckUpdate(req); err != nil {
		return server.Server{}, err
	}
	for range maxAttempts {
		cur, err := r.get(ctx, req.ID)
		if err != nil {
			return server.Server{}, err
		}
		if err := stale(cur, req.ExpectedRevision); err != nil {
			return server.Server{}, err
		}
		next := cur
		c, err := Apply(&next, req)
		if err != nil || !c.Changed {
			return cur, err
		}
		if next.Runtime != cur.Runtime {
			if err := r.checkMove(ctx, cur, next); err != nil {
				return server.Server{}, err
			}
		}
		next.UpdatedAt = r.now()
		subj, seq := kvSubject(cur.ID), cur.Revision
		if claims(cur, next) {
			snap, err := r.snapshot(ctx)
			if err != nil {
				return server.Server{}, err
			}
			i := slices.IndexFunc(snap.servers, func(s server.Server) bool { return s.ID == cur.ID })
			if i < 0 || snap.servers[i].Revision != cur.Revision {
				continue // changed since read: stale() on the next read decides
			}
			if err := taken(next, snap.servers); err != nil {
				return server.Server{}, err
			}
			subj, seq = allKeys, snap.seq
		}
		rev, err := r.write(ctx, next, subj, seq)
		if errors.Is(err, errChanged) {
			continue // the check above or stale() on the next read decides
		}
		if err != nil {
			return server.Server{}, err
		}
		next.Revision = rev
		next.Status = ReadStatus(ctx, r.status, next)
		r.log.Info("server updated", logkey.Server, next.ID, logkey.Node, next.Node)
		return next, r.publish(ctx, event.ServerUpdated, next, c.SpecChanged)
	}
	return server.Server{}, errs.Wrap(errs.Conflict, ErrStale, "server %s keeps changing; retry", req.ID)
}

// stale returns a Conflict when expected is set and is not s's revision.
func stale(s server.Server, expected uint64) error {
	if expected != 0 && s.Revision != expected {
		return errs.Wrap(errs.Conflict, ErrStale, "server %s is at revision %d, not %d", s.ID, s.Revision, expected)
	}
	return nil
}

// Delete removes a server; its agent stops and removes the workload. The
// reply carries the revision of the deletion, which is also its event's id.
func (r *Registry) Delete(ctx context.Context, req server.DeleteRequest) (server.DeleteResponse, error) {
	if !ValidID(req.ID) {
		return server.DeleteResponse{}, errs.Field("id", IDRule)
	}
	for range maxAttempts {
		s, err := r.get(ctx, req.ID)
		if err != nil {
			return server.DeleteResponse{}, err
		}
		if err := stale(s, req.ExpectedRevision); err != nil {
			return server.DeleteResponse{}, err
		}
		m := nats.NewMsg(kvSubject(s.ID))
		m.Header.Set("KV-Operation", "DEL")
		ack, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(s.Revision))
		if isWrongLastSeq(err) {
			continue // stale() on the next read decides
		}
		if err != nil {
			return server.DeleteResponse{}, unavailable(err, "deleting server %s", s.ID)
		}
		s.Revision = ack.Sequence
		r.log.Info("server deleted", logkey.Server, s.ID, logkey.Node, s.Node)
		return server.DeleteResponse{ID: s.ID, Revision: s.Revision}, r.publish(ctx, event.ServerDeleted, s, false)
	}
	return server.DeleteResponse{}, errs.Wrap(errs.Conflict, ErrStale, "server %s keeps changing; retry", req.ID)
}

// publish stores the event of a change at s.Revision, with message id
// "<id>:<revision>" and without the server's secrets.
func (r *Registry) publish(ctx context.Context, typ event.Type, s server.Server, specChanged bool) error {
	id := fmt.Sprintf("%s:%d", s.ID, s.Revision)
	env, err := event.New(typ, id, r.opts.Source, server.Event{Server: s.Redacted(), SpecChanged: specChanged})
	if err != nil {
		return err
	}
	if _, err := bus.PublishEvent(ctx, r.js, subject.ServerEvent(s.ID), env); err != nil {
		return fmt.Errorf("server %s saved at revision %d, but publishing its event: %w", s.ID, s.Revision, err)
	}
	return nil
}
