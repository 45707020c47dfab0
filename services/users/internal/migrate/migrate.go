// Package migrate moves data written by earlier releases into the current
// shape, once, at the registry's start. Every step is a compare-and-set
// that leaves a record alone when someone changed it in between, and
// running it again finds nothing left to do, so any number of replicas
// may run it at once, and a crash half-way is finished by the next start.
//
// Steps so far (release 0.2, the desired/observed split):
//   - usage counters and counted windows move out of each user's record
//     in the users bucket into the usage bucket;
//   - an agent's report on a server moves out of the server's record in
//     the servers bucket into the server_status bucket, under
//     "<node>.<server>".
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Result counts what Run moved.
type Result struct {
	Users   int
	Servers int
}

// Run migrates every bucket that needs it.
func Run(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (Result, error) {
	var res Result
	kv := map[string]jetstream.KeyValue{}
	for _, b := range []string{subject.BucketUsers, subject.BucketUsage, subject.BucketServers, subject.BucketServerStatus} {
		h, err := js.KeyValue(ctx, b)
		if err != nil {
			return res, errs.Wrap(errs.Unavailable, err, "opening bucket %s", b)
		}
		kv[b] = h
	}
	n, err := each(ctx, kv[subject.BucketUsers], func(e jetstream.KeyValueEntry) (bool, error) {
		return moveUsage(ctx, kv[subject.BucketUsers], kv[subject.BucketUsage], e)
	})
	res.Users = n
	if err != nil {
		return res, err
	}
	n, err = each(ctx, kv[subject.BucketServers], func(e jetstream.KeyValueEntry) (bool, error) {
		return moveStatus(ctx, kv[subject.BucketServers], kv[subject.BucketServerStatus], e)
	})
	res.Servers = n
	if err != nil {
		return res, err
	}
	if res.Users > 0 || res.Servers > 0 {
		log.Info("migrated records to the desired/observed split", logkey.Count, res.Users+res.Servers,
			logkey.Detail, "usage out of users, status out of servers")
	}
	return res, nil
}

// each calls fn with the latest entry of every key and counts how many it
// changed.
func each(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry) (bool, error)) (int, error) {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "reading bucket %s", kv.Bucket())
	}
	defer func() { _ = w.Stop() }()
	var entries []jetstream.KeyValueEntry
	for e := range w.Updates() {
		if e == nil {
			break
		}
		if e.Operation() == jetstream.KeyValuePut {
			entries = append(entries, e)
		}
	}
	n := 0
	for _, e := range entries {
		changed, err := fn(e)
		if err != nil {
			return n, err
		}
		if changed {
			n++
		}
	}
	return n, nil
}

// moveUsage moves the "usage" field of one user record into the usage
// bucket (unless counters are already there: those are newer) and stores
// the record without it.
func moveUsage(ctx context.Context, users, usage jetstream.KeyValue, e jetstream.KeyValueEntry) (bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		return false, nil // not ours to repair; the registry logs it when read
	}
	old, ok := raw["usage"]
	if !ok {
		return false, nil
	}
	if _, err := usage.Create(ctx, e.Key(), old); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return false, errs.Wrap(errs.Unavailable, err, "moving usage of user %s", e.Key())
	}
	delete(raw, "usage")
	return rewrite(ctx, users, e, raw)
}

// moveStatus moves the "status" field of one server record into the
// server_status bucket (unless its node already reported there) and
// stores the record without it.
func moveStatus(ctx context.Context, servers, status jetstream.KeyValue, e jetstream.KeyValueEntry) (bool, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		return false, nil
	}
	if _, ok := raw["status"]; !ok {
		return false, nil
	}
	var s server.Server
	if err := json.Unmarshal(e.Value(), &s); err == nil && s.Status.State != "" && subject.ValidToken(s.Node) {
		if s.ID == "" {
			s.ID = e.Key()
		}
		st := s.Status
		// The old agent wrote a status only while the record held the
		// spec it applied, and the registry reset it to pending on a
		// spec change: it is about the current spec.
		st.Spec = s.SpecKey()
		data, err := json.Marshal(st)
		if err != nil {
			return false, errs.Wrap(errs.Internal, err, "encoding status of server %s", s.ID)
		}
		if _, err := status.Create(ctx, subject.ServerStatusKey(s.Node, s.ID), data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return false, errs.Wrap(errs.Unavailable, err, "moving status of server %s", s.ID)
		}
	}
	delete(raw, "status")
	return rewrite(ctx, servers, e, raw)
}

// rewrite stores raw in place of e with a compare-and-set; a record that
// changed since was written by the current code and is left alone.
func rewrite(ctx context.Context, kv jetstream.KeyValue, e jetstream.KeyValueEntry, raw map[string]json.RawMessage) (bool, error) {
	delete(raw, "revision")
	data, err := json.Marshal(raw)
	if err != nil {
		return false, errs.Wrap(errs.Internal, err, "encoding %s", e.Key())
	}
	_, err = kv.Update(ctx, e.Key(), data, e.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return false, nil
	}
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "rewriting %s in bucket %s", e.Key(), kv.Bucket())
	}
	return true, nil
}
