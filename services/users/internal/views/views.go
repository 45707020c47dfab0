// Package views keeps the node_views bucket: for every node, exactly the
// users and servers that node must serve, derived from the users bucket
// (placement, status, credentials), the servers bucket (each server's
// node) and the enrollments bucket (which nodes exist, their groups).
// An agent's credential reads only its node's keys, so a node never sees
// the secrets of users it does not serve, and its memory and watch
// traffic grow with its own users, not the fleet's.
//
// The maintainer is level-triggered: it watches its four inputs and the
// views themselves, and writes whatever differs from what it derives. Any
// number of replicas may run it; they write the same values, and one that
// lags behind is corrected by the others (and corrects itself) as soon as
// its watches catch up.
package views

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// maxPending bounds view writes in flight at once.
const maxPending = 512

// digest fingerprints a view value.
type digest [16]byte

func digestOf(data []byte) digest {
	sum := sha256.Sum256(data)
	var d digest
	copy(d[:], sum[:])
	return d
}

// userView is what the maintainer keeps of a user.
type userView struct {
	placement user.Placement
	// data is the view value, nil when the user is served nowhere (its
	// status is not served); sum fingerprints it without the trace
	// context, so a change that leaves what nodes serve alone (a rename,
	// a note, a limit) writes nothing.
	data []byte
	sum  digest
}

// serverView is what the maintainer keeps of a server.
type serverView struct {
	node string
	data []byte
	sum  digest
}

// input is one change seen on a watched bucket.
type input struct {
	bucket string
	entry  jetstream.KeyValueEntry // nil: that bucket's snapshot is loaded
}

// Maintainer derives and writes the views. Build it with New, run it with
// Run.
type Maintainer struct {
	js  jetstream.JetStream
	log *slog.Logger

	// The state below is owned by Run's loop goroutine.
	users   map[string]userView
	servers map[string]serverView
	enrolls map[string]node.Enrollment
	// actual is what the views bucket holds: key -> fingerprint.
	actual map[string]digest
	// byID lists the view keys that exist for each user or server id.
	byID   map[string]map[string]bool
	loaded map[string]bool
	ready  chan struct{}
	// nodeSet caches nodes(); a change of servers or enrollments drops it.
	nodeSet map[string][]string
}

// New returns a maintainer over js.
func New(js jetstream.JetStream, log *slog.Logger) *Maintainer {
	return &Maintainer{
		js: js, log: log,
		users: map[string]userView{}, servers: map[string]serverView{},
		enrolls: map[string]node.Enrollment{}, actual: map[string]digest{},
		byID: map[string]map[string]bool{}, loaded: map[string]bool{},
		ready: make(chan struct{}),
	}
}

// Ready is closed once every view has been brought in line with the
// snapshot of its inputs.
func (m *Maintainer) Ready() <-chan struct{} { return m.ready }

var watched = []string{subject.BucketUsers, subject.BucketServers, subject.BucketEnrollments, subject.BucketNodeViews}

// Run keeps the views until ctx ends. A broken watch is opened again with
// backoff; every restart rebuilds from fresh snapshots.
func (m *Maintainer) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	bo.MaxInterval = 10 * time.Second
	for {
		err := m.runOnce(ctx, bo.Reset)
		if ctx.Err() != nil {
			return nil
		}
		d := bo.NextBackOff()
		m.log.Warn("keeping node views, retrying", logkey.Err, err, logkey.Delay, d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

func (m *Maintainer) runOnce(ctx context.Context, ok func()) error {
	views, err := m.js.KeyValue(ctx, subject.BucketNodeViews)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketNodeViews)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan input, 1024)
	g, gctx := errgroup.WithContext(wctx)
	for _, b := range watched {
		g.Go(func() error { return watch(gctx, m.js, b, in) })
	}
	g.Go(func() error {
		defer cancel()
		return m.loop(gctx, views, in, ok)
	})
	return g.Wait()
}

// watch sends every entry of bucket to in, then nil when its snapshot is
// loaded, until ctx ends or the watch breaks.
func watch(ctx context.Context, js jetstream.JetStream, bucket string, in chan<- input) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", bucket)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching bucket %s", bucket)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, open := <-w.Updates():
			if !open {
				return errors.New("watch of " + bucket + " ended")
			}
			select {
			case in <- input{bucket: bucket, entry: e}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// loop applies inputs one at a time. Until every snapshot is loaded it
// only records; then it writes everything that differs, and from then on
// what each change touches.
func (m *Maintainer) loop(ctx context.Context, views jetstream.KeyValue, in <-chan input, ok func()) error {
	m.reset()
	w := &writer{js: m.js}
	for {
		select {
		case <-ctx.Done():
			return w.wait(ctx)
		case i := <-in:
			if i.entry == nil {
				m.loaded[i.bucket] = true
				if len(m.loaded) == len(watched) {
					m.reconcileAll(w)
					if err := w.wait(ctx); err != nil {
						return err
					}
					ok()
					m.markReady()
					m.log.Info("node views loaded", logkey.Count, len(m.actual))
				}
				continue
			}
			keys := m.record(i.bucket, i.entry)
			if len(m.loaded) < len(watched) {
				continue
			}
			for _, k := range keys {
				m.reconcile(w, k)
			}
			// Flush when nothing else is waiting, so a burst of changes
			// shares acknowledgements and a lone change is not held back.
			if len(in) == 0 {
				if err := w.wait(ctx); err != nil {
					return err
				}
			}
		}
	}
}

func (m *Maintainer) markReady() {
	select {
	case <-m.ready:
	default:
		close(m.ready)
	}
}

func (m *Maintainer) reset() {
	m.users, m.servers = map[string]userView{}, map[string]serverView{}
	m.enrolls, m.actual = map[string]node.Enrollment{}, map[string]digest{}
	m.byID, m.loaded = map[string]map[string]bool{}, map[string]bool{}
	m.nodeSet = nil
}

// record takes one change into the state and returns the view keys whose
// desired value it may have changed.
func (m *Maintainer) record(bucket string, e jetstream.KeyValueEntry) []string {
	put := e.Operation() == jetstream.KeyValuePut
	key := e.Key()
	switch bucket {
	case subject.BucketNodeViews:
		_, _, id, ok := subject.ParseViewKey(key)
		if !ok {
			return nil
		}
		if put {
			m.actual[key] = digestOf(stripTrace(e.Value()))
			m.index(id, key, true)
		} else {
			delete(m.actual, key)
			m.index(id, key, false)
		}
		return []string{key} // a view someone else changed: check it
	case subject.BucketUsers:
		before := m.userKeys(key)
		if !put {
			delete(m.users, key)
			return before
		}
		var u user.User
		if err := json.Unmarshal(e.Value(), &u); err != nil {
			m.log.Error("decoding user", logkey.User, key, logkey.Err, err)
			return nil
		}
		if u.ID == "" {
			u.ID = key
		}
		m.users[key] = viewOfUser(u)
		return union(before, m.userKeys(key))
	case subject.BucketServers:
		m.nodeSet = nil
		before := m.serverKeys(key)
		if !put {
			delete(m.servers, key)
			return union(before, m.existing(key))
		}
		var s server.Server
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			m.log.Error("decoding server", logkey.Server, key, logkey.Err, err)
			return nil
		}
		if s.ID == "" {
			s.ID = key
		}
		s.Revision = e.Revision()
		m.servers[key] = viewOfServer(s)
		return union(before, m.serverKeys(key), m.existing(key))
	case subject.BucketEnrollments:
		m.nodeSet = nil
		if !put {
			delete(m.enrolls, key)
		} else {
			var en node.Enrollment
			if err := json.Unmarshal(e.Value(), &en); err != nil {
				m.log.Error("decoding enrollment", logkey.Node, key, logkey.Err, err)
				return nil
			}
			m.enrolls[key] = en
		}
		if len(m.loaded) < len(watched) {
			return nil
		}
		// A node's groups or existence changed: every user may move.
		var keys []string
		for id := range m.users {
			keys = append(keys, subject.ViewUserKey(key, id))
		}
		for k := range m.actual {
			if n, _, _, ok := subject.ParseViewKey(k); ok && n == key {
				keys = append(keys, k)
			}
		}
		return keys
	}
	return nil
}

// index records that key exists (or not) for the user or server id.
func (m *Maintainer) index(id, key string, present bool) {
	if present {
		if m.byID[id] == nil {
			m.byID[id] = map[string]bool{}
		}
		m.byID[id][key] = true
		return
	}
	delete(m.byID[id], key)
	if len(m.byID[id]) == 0 {
		delete(m.byID, id)
	}
}

// existing is every view key present for id.
func (m *Maintainer) existing(id string) []string {
	var out []string
	for k := range m.byID[id] {
		out = append(out, k)
	}
	return out
}

// nodes is every node that gets views: the enrolled ones that are not
// revoked, and the nodes servers are placed on (a fleet from before
// enrollments existed). Revoked nodes get none.
func (m *Maintainer) nodes() map[string][]string {
	if m.nodeSet != nil {
		return m.nodeSet
	}
	out := map[string][]string{}
	for _, s := range m.servers {
		out[s.node] = nil
	}
	for id, en := range m.enrolls {
		if en.Active() {
			out[id] = en.Groups
		} else {
			delete(out, id)
		}
	}
	m.nodeSet = out
	return out
}

// userKeys is every view key the user should have now, plus the ones it
// has.
func (m *Maintainer) userKeys(id string) []string {
	keys := m.existing(id)
	u, ok := m.users[id]
	if !ok || u.data == nil {
		return keys
	}
	for n, groups := range m.nodes() {
		if u.placement.Serves(n, groups) {
			keys = append(keys, subject.ViewUserKey(n, id))
		}
	}
	return keys
}

func (m *Maintainer) serverKeys(id string) []string {
	s, ok := m.servers[id]
	if !ok {
		return nil
	}
	return []string{subject.ViewServerKey(s.node, id)}
}

// desired is the value key should hold, or nil when it should not exist.
func (m *Maintainer) desired(key string) ([]byte, digest, bool) {
	n, kind, id, ok := subject.ParseViewKey(key)
	if !ok {
		return nil, digest{}, false
	}
	nodes := m.nodes()
	groups, known := nodes[n]
	if !known {
		return nil, digest{}, false
	}
	switch kind {
	case subject.ViewUser:
		u, ok := m.users[id]
		if !ok || u.data == nil || !u.placement.Serves(n, groups) {
			return nil, digest{}, false
		}
		return u.data, u.sum, true
	case subject.ViewServer:
		s, ok := m.servers[id]
		if !ok || s.node != n {
			return nil, digest{}, false
		}
		return s.data, s.sum, true
	}
	return nil, digest{}, false
}

// reconcile writes key if what it holds differs from what it should.
func (m *Maintainer) reconcile(w *writer, key string) {
	data, sum, want := m.desired(key)
	have, exists := m.actual[key]
	switch {
	case want && (!exists || have != sum):
		w.put(key, data)
	case !want && exists:
		w.del(key)
	}
}

// reconcileAll brings every view in line.
func (m *Maintainer) reconcileAll(w *writer) {
	seen := map[string]bool{}
	for k := range m.actual {
		seen[k] = true
		m.reconcile(w, k)
	}
	for id := range m.users {
		for _, k := range m.userKeys(id) {
			if !seen[k] {
				seen[k] = true
				m.reconcile(w, k)
			}
		}
	}
	for id := range m.servers {
		for _, k := range m.serverKeys(id) {
			if !seen[k] {
				seen[k] = true
				m.reconcile(w, k)
			}
		}
	}
}

// viewOfUser is what nodes serve of u: its id, status, protocols and
// credentials (and the trace context of the change), nothing else; nil
// when its status is not served.
func viewOfUser(u user.User) userView {
	v := userView{placement: u.Placement}
	if !u.Status.Served() {
		return v
	}
	view := user.User{ID: u.ID, Status: u.Status, Protocols: u.Protocols, Credentials: u.Credentials}
	bare, _ := json.Marshal(view)
	view.TraceParent = u.TraceParent
	v.data, _ = json.Marshal(view)
	v.sum = digestOf(bare)
	return v
}

// viewOfServer is the desired server as its node runs it, with the
// revision of its record (which the node's reports and events name), and
// without a status (that is the node's own report).
func viewOfServer(s server.Server) serverView {
	s.Status = server.Status{}
	data, _ := json.Marshal(s)
	return serverView{node: s.Node, data: data, sum: digestOf(stripTrace(data))}
}

// stripTrace returns a view value without its trace context, as its
// fingerprint is taken (server views carry none and are returned as they
// are).
func stripTrace(data []byte) []byte {
	if !bytes.Contains(data, []byte(`"trace_parent"`)) {
		return data
	}
	var u user.User
	if json.Unmarshal(data, &u) != nil {
		return data
	}
	u.TraceParent = ""
	bare, _ := json.Marshal(u)
	return bare
}

func union(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, k := range l {
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// writer publishes view writes asynchronously, at most maxPending at once.
type writer struct {
	js      jetstream.JetStream
	pending []jetstream.PubAckFuture
	errs    []error
}

func (w *writer) put(key string, data []byte) {
	w.publish(&nats.Msg{Subject: "$KV." + subject.BucketNodeViews + "." + key, Data: data})
}

func (w *writer) del(key string) {
	m := nats.NewMsg("$KV." + subject.BucketNodeViews + "." + key)
	m.Header.Set("KV-Operation", "DEL")
	w.publish(m)
}

func (w *writer) publish(m *nats.Msg) {
	f, err := w.js.PublishMsgAsync(m)
	if err != nil {
		w.errs = append(w.errs, fmt.Errorf("writing view %s: %w", m.Subject, err))
		return
	}
	w.pending = append(w.pending, f)
	if len(w.pending) >= maxPending {
		_ = w.wait(context.Background())
	}
}

// wait waits for every write in flight; a failure is returned once, and
// the maintainer restarts from fresh snapshots.
func (w *writer) wait(ctx context.Context) error {
	for _, f := range w.pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.errs = append(w.errs, err)
		case <-ctx.Done():
			w.pending = nil
			return nil
		}
	}
	w.pending = w.pending[:0]
	err := errors.Join(w.errs...)
	w.errs = nil
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "writing node views")
	}
	return nil
}
