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

// WatchView feeds the reconciler from this node's view in the node_views
// bucket (keys "<node>.s.<server>" and "<node>.u.<user>", all this node's
// credential may read) until ctx ends: a snapshot (ended by ServersLoaded
// and UsersLoaded), then every change. A broken watch is opened again
// with backoff, and its snapshot is authoritative.
func (r *Reconciler) WatchView(ctx context.Context, js jetstream.JetStream) error {
	return r.watch(ctx, js, subject.BucketNodeViews, subject.NodeView(r.cfg.Node),
		func(e jetstream.KeyValueEntry) bool {
			_, kind, id, ok := subject.ParseViewKey(e.Key())
			if !ok {
				return false
			}
			switch kind {
			case subject.ViewServer:
				var s server.Server
				if err := json.Unmarshal(e.Value(), &s); err != nil {
					r.log.Error("decoding server", logkey.Server, id, logkey.Err, err)
					return false
				}
				// s.Revision is the revision of the server's record (the
				// view carries it), which reports and events name.
				s.ID = id
				r.PutServer(s)
				return s.Node == r.cfg.Node
			default:
				var u user.User
				if err := json.Unmarshal(e.Value(), &u); err != nil {
					r.log.Error("decoding user", logkey.User, id, logkey.Err, err)
					return false
				}
				u.ID = id
				r.PutUser(u)
				return true
			}
		},
		func(key string) {
			switch _, kind, id, ok := subject.ParseViewKey(key); {
			case !ok:
			case kind == subject.ViewServer:
				r.DeleteServer(id)
			default:
				r.DeleteUser(id)
			}
		},
		func(present map[string]bool) {
			servers, users := map[string]bool{}, map[string]bool{}
			for key, mine := range present {
				if _, kind, id, ok := subject.ParseViewKey(key); ok && kind == subject.ViewServer {
					servers[id] = mine
				} else if ok {
					users[id] = mine
				}
			}
			r.ServersLoaded(servers)
			r.UsersLoaded(users)
		})
}

func (r *Reconciler) watch(ctx context.Context, js jetstream.JetStream, bucket, filter string,
	put func(jetstream.KeyValueEntry) bool, del func(string), loaded func(map[string]bool)) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	bo.MaxInterval = 10 * time.Second
	bo.Reset()
	for {
		err := r.watchOnce(ctx, js, bucket, filter, put, del, loaded, bo.Reset)
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

func (r *Reconciler) watchOnce(ctx context.Context, js jetstream.JetStream, bucket, filter string,
	put func(jetstream.KeyValueEntry) bool, del func(string), loaded func(map[string]bool), ok func()) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", bucket)
	}
	w, err := kv.Watch(ctx, filter)
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

// KVStatus records server statuses in the server_status bucket, under
// "<node>.<server>": observed state, written only by this node's agent.
type KVStatus struct {
	JS jetstream.JetStream
}

// SetStatus implements StatusStore. The key is this node's alone, so a
// plain put is enough; st carries the SpecKey of applied, so readers can
// tell a report about an older spec from a current one.
func (s KVStatus) SetStatus(ctx context.Context, applied server.Server, st server.Status) error {
	kv, err := s.JS.KeyValue(ctx, subject.BucketServerStatus)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketServerStatus)
	}
	st.Spec = applied.SpecKey()
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding status of %s: %w", applied.ID, err)
	}
	if _, err := kv.Put(ctx, subject.ServerStatusKey(applied.Node, applied.ID), data); err != nil {
		return errs.Wrap(errs.Unavailable, err, "writing status of server %s", applied.ID)
	}
	return nil
}
