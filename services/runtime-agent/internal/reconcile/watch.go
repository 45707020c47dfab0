package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// WatchServers feeds the reconciler from the servers bucket until ctx
// ends: a snapshot (ended by ServersLoaded), then every change. A broken
// watch is opened again with backoff, and its snapshot is authoritative.
func (r *Reconciler) WatchServers(ctx context.Context, js jetstream.JetStream) error {
	return r.watch(ctx, js, subject.BucketServers,
		func(e jetstream.KeyValueEntry) bool {
			var s server.Server
			if err := json.Unmarshal(e.Value(), &s); err != nil {
				r.log.Error("decoding server", logkey.Server, e.Key(), logkey.Err, err)
				return false
			}
			s.Revision = e.Revision()
			if s.ID == "" {
				s.ID = e.Key()
			}
			r.PutServer(s)
			return s.Node == r.cfg.Node
		},
		r.DeleteServer, r.ServersLoaded)
}

// WatchUsers feeds the reconciler from the users bucket, as WatchServers.
func (r *Reconciler) WatchUsers(ctx context.Context, js jetstream.JetStream) error {
	return r.watch(ctx, js, subject.BucketUsers,
		func(e jetstream.KeyValueEntry) bool {
			var u user.User
			if err := json.Unmarshal(e.Value(), &u); err != nil {
				r.log.Error("decoding user", logkey.User, e.Key(), logkey.Err, err)
				return false
			}
			if u.ID == "" {
				u.ID = e.Key()
			}
			r.PutUser(u)
			return true
		},
		r.DeleteUser, r.UsersLoaded)
}

func (r *Reconciler) watch(ctx context.Context, js jetstream.JetStream, bucket string,
	put func(jetstream.KeyValueEntry) bool, del func(string), loaded func(map[string]bool)) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	bo.MaxInterval = 10 * time.Second
	bo.Reset()
	for {
		err := r.watchOnce(ctx, js, bucket, put, del, loaded, bo.Reset)
		if ctx.Err() != nil {
			return nil
		}
		d := bo.NextBackOff()
		r.log.Warn("watching bucket, retrying", logkey.Bucket, bucket, logkey.Err, err, logkey.Delay, d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

func (r *Reconciler) watchOnce(ctx context.Context, js jetstream.JetStream, bucket string,
	put func(jetstream.KeyValueEntry) bool, del func(string), loaded func(map[string]bool), ok func()) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", bucket)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching bucket %s", bucket)
	}
	defer func() { _ = w.Stop() }()
	present := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, open := <-w.Updates():
			if !open {
				return errors.New("watch of " + bucket + " ended")
			}
			if e == nil {
				if present != nil {
					loaded(present)
					present = nil
					ok()
					r.log.Info("bucket loaded", logkey.Bucket, bucket)
				}
				continue
			}
			mine := false
			switch e.Operation() {
			case jetstream.KeyValuePut:
				mine = put(e)
			default:
				del(e.Key())
			}
			if present != nil {
				present[e.Key()] = mine
			}
		}
	}
}

// KVStatus records server statuses in the servers bucket.
type KVStatus struct {
	JS jetstream.JetStream
}

// SetStatus implements StatusStore with a compare-and-set on the server's
// entry: it changes only the status (other fields are kept byte for byte,
// even ones this agent does not know), only while the entry holds the
// spec that was applied, and not at all when it already says st.
func (s KVStatus) SetStatus(ctx context.Context, applied server.Server, st server.Status) error {
	kv, err := s.JS.KeyValue(ctx, subject.BucketServers)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketServers)
	}
	want := specKey(applied)
	for range 8 {
		e, err := kv.Get(ctx, applied.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return nil
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "reading server %s", applied.ID)
		}
		var cur server.Server
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			return errs.Wrap(errs.Internal, err, "decoding server %s", applied.ID)
		}
		if err := json.Unmarshal(e.Value(), &raw); err != nil {
			return errs.Wrap(errs.Internal, err, "decoding server %s", applied.ID)
		}
		if specKey(cur) != want {
			return nil // a newer spec: its own apply reports
		}
		old := cur.Status
		old.Time = st.Time
		if old == st {
			return nil
		}
		data, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("encoding status of %s: %w", applied.ID, err)
		}
		raw["status"] = data
		delete(raw, "revision")
		body, err := json.Marshal(raw)
		if err != nil {
			return fmt.Errorf("encoding server %s: %w", applied.ID, err)
		}
		_, err = kv.Update(ctx, applied.ID, body, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "writing status of server %s", applied.ID)
		}
		return nil
	}
	return errs.New(errs.Conflict, "server %s keeps changing; status not written", applied.ID)
}
