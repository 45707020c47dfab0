// Package reconcile makes a node's Xray servers and their users what the
// servers and users buckets say, level-triggered: whatever was missed
// (an outage, a crash, a restart of Xray or of the agent) is made up from
// the desired state alone, with no special resync path and no restart of
// Xray for a user change.
//
// The core is the Reconciler. It is fed desired state (PutServer,
// DeleteServer, PutUser, DeleteUser and the Loaded calls that end a
// snapshot) and runtime events (Observe), and runs one worker per server,
// which:
//
//   - deploys the server: checks the spec (errs.Invalid with field names)
//     and that its new ports are free on the host (by binding them), writes
//     the Xray config under the data dir, ensures the image (importing a
//     FROM-scratch image of the Xray binary when the engine lacks it) and
//     replaces the workload, waits until the API answers and every inbound
//     listens, then records server.Status applied with the node's public
//     host. A spec that fails leaves the running server as it was and is
//     reported on the status and as server.failed.v1;
//   - applies users live through the Xray API: changes are queued per
//     server by user id (so repeated changes of one user coalesce), diffed
//     against what was applied by credential fingerprint, and applied in
//     batches, retried with backoff until they succeed;
//   - checks drift (the users Xray lists against the desired ones) when a
//     snapshot is loaded, after every start of its Xray, and every drift
//     interval, and repairs it.
//
// The workload carries labels with the server id, the config hash and the
// API address, so an agent restarted while Xray runs adopts it; what it
// applied is kept per Xray instance under the data dir, so the adopted
// instance is not guessed at.
//
// The NATS side is thin: WatchView feeds the core from this node's view
// (node_views, keys under "<node>."), KVStatus writes statuses into the
// server_status bucket under the node's own keys.
package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Labels of an Xray workload, beside the runtime's owner labels.
const (
	LabelRole       = "vpnfleet.role"
	LabelServer     = "vpnfleet.server"
	LabelConfigHash = "vpnfleet.config-hash"
	LabelSpecKey    = "vpnfleet.spec-key"
	LabelAPI        = "vpnfleet.xray-api"
	// LabelPrivileges says how Xray runs (user, capabilities, read-only
	// root), so an Xray adopted from an agent that ran it otherwise is
	// redeployed.
	LabelPrivileges = "vpnfleet.xray-privileges"
	// RoleXray is the value of LabelRole on Xray workloads.
	RoleXray = "xray"
)

// Config is what a Reconciler needs to know about its node.
type Config struct {
	// Node is this node's id; only servers of this node are reconciled,
	// and the users of its view (placed on it by the registry) served.
	Node string
	// PublicHost is where clients reach this node; it goes into every
	// applied status, and so into links.
	PublicHost string
	// DataDir holds, per server, the Xray config and the record of applied
	// users (<DataDir>/<server id>/). It must be absolute for container
	// runtimes, which mount the config.
	DataDir string
	// XrayBin is the Xray executable: what the process runtime runs, and
	// what goes into the image imported when a container engine lacks
	// XrayImage. Empty when unknown.
	XrayBin string
	// XrayImage is the image container runtimes run.
	XrayImage string
	// XrayUser is the uid:gid Xray runs as (default DefaultXrayUser; "0:0"
	// keeps root, still with every capability it does not need dropped).
	XrayUser string
	// AllowPrivateNetworks lets users reach private and loopback addresses
	// (xray.Spec.AllowPrivateNetworks).
	AllowPrivateNetworks bool
	// XrayLogLevel is Xray's log level (default warning).
	XrayLogLevel string
	// DriftInterval is how often every server's users are compared with
	// Xray's (default 60s).
	DriftInterval time.Duration
	// ReadyTimeout bounds the wait for a new Xray to answer (default 30s).
	ReadyTimeout time.Duration
	// StopTimeout is how long Xray gets to stop before it is killed
	// (default 10s).
	StopTimeout time.Duration
	// MaxBackoff caps the delay between retries of a failed apply
	// (default 30s).
	MaxBackoff time.Duration
	// XrayLimits bound the replies read from each Xray's API (zero:
	// xray.DefaultLimits, sized for xray.MaxUsers users per inbound).
	XrayLimits xray.Limits
	// Retiring, when set, is called with a running Xray just before the
	// reconciler removes it (its server changed or was deleted), while its
	// traffic counters can still be read.
	Retiring func(ctx context.Context, s RunningServer)
	Log      *slog.Logger
}

func (c *Config) defaults() {
	if c.DriftInterval <= 0 {
		c.DriftInterval = time.Minute
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.XrayUser == "" {
		c.XrayUser = DefaultXrayUser
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// StatusStore records what the agent did with a server. The status names
// the spec it is about (server.Status.Spec), so a report on an older spec
// is never taken for one on the current spec.
type StatusStore interface {
	SetStatus(ctx context.Context, applied server.Server, st server.Status) error
}

// Emit publishes a domain event (the agent's outbox).
type Emit func(ctx context.Context, subj string, typ event.Type, id string, data any) error

// RunningServer is one server's running Xray, for readers of its API such
// as the usage meter.
type RunningServer struct {
	ServerID string
	// Workload is the runtime's id of the Xray workload.
	Workload string
	// Instance identifies this run of Xray: "<workload id>@<started at,
	// RFC 3339 with nanoseconds>". It changes whenever Xray (re)starts,
	// which is when its counters restart from zero.
	Instance string
	// Client drives this instance's API. It is closed when the instance is
	// replaced or the reconciler stops; calls on it then fail with
	// errs.Unavailable, and the next Servers call has the new one.
	Client *xray.Client
}

// Reconciler converges one node's servers and users. Build it with New and
// run it with Run; feed it with the Put/Delete/Loaded methods (or the
// watchers) and Observe.
type Reconciler struct {
	cfg    Config
	rts    *runtime.Set
	status StatusStore
	emit   Emit
	log    *slog.Logger

	mu    sync.Mutex
	users map[string]*member
	// traces holds, per user, the traceparent of its latest change, so
	// applying it continues the trace of the request that made it.
	traces       map[string]string
	usersLoaded  bool
	serversReady bool
	workers      map[string]*worker
	pending      []*worker // made but not yet running
	spawn        chan struct{}
	// loaded is closed once both snapshots are in (orphans are collected
	// then).
	loaded chan struct{}
}

// New returns a reconciler for cfg.Node over the runtimes of rts: each
// server runs on the runtime it names, else where it runs already, else
// on rts' default. It does nothing until Run.
func New(cfg Config, rts *runtime.Set, status StatusStore, emit Emit) (*Reconciler, error) {
	cfg.defaults()
	var fe []errs.FieldError
	if cfg.Node == "" {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "must be set"})
	}
	if !filepath.IsAbs(cfg.DataDir) {
		fe = append(fe, errs.FieldError{Field: "data_dir", Rule: "must be an absolute path"})
	}
	if cfg.PublicHost == "" {
		fe = append(fe, errs.FieldError{Field: "public_host", Rule: "must be set"})
	}
	if err := (runtime.Spec{User: cfg.XrayUser}).ValidUser(); err != nil {
		fe = append(fe, errs.FieldError{Field: "xray_user", Rule: err.Error()})
	}
	if err := errs.Fields(fe...); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "creating %s", cfg.DataDir)
	}
	if err := openDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	return &Reconciler{
		cfg: cfg, rts: rts, status: status, emit: emit,
		log:     cfg.Log.With(logkey.Component, "reconcile"),
		users:   map[string]*member{},
		traces:  map[string]string{},
		workers: map[string]*worker{},
		spawn:   make(chan struct{}, 1),
		loaded:  make(chan struct{}),
	}, nil
}

// Run runs the server workers, the periodic drift check and, once the
// snapshots are loaded, the removal of Xray workloads whose server is
// gone. It returns nil when ctx ends; running Xray workloads are left
// running for the next agent to adopt.
func (r *Reconciler) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		tick := time.NewTicker(r.cfg.DriftInterval)
		defer tick.Stop()
		loaded := r.loaded
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-r.spawn:
				for _, w := range r.takePending() {
					g.Go(func() error { return w.run(gctx) })
				}
			case <-tick.C:
				r.resyncAll()
			case <-loaded:
				loaded = nil
				r.removeOrphans(gctx)
			}
		}
	})
	return g.Wait()
}

func (r *Reconciler) takePending() []*worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

// PutServer sets a server's desired state. Servers of other nodes are
// ignored (a server moved away is deleted here).
func (r *Reconciler) PutServer(s server.Server) {
	if s.Node != r.cfg.Node {
		r.DeleteServer(s.ID)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.workers[s.ID]
	if w == nil {
		w = newWorker(r, s.ID)
		r.workers[s.ID] = w
		r.pending = append(r.pending, w)
		select {
		case r.spawn <- struct{}{}:
		default:
		}
	}
	w.want = &s
	w.poke()
}

// DeleteServer removes a server: its worker stops and removes the workload
// and its files.
func (r *Reconciler) DeleteServer(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.workers[id]; w != nil {
		w.want = nil
		w.poke()
	}
}

// ServersLoaded ends a snapshot of the servers bucket: servers not in
// present are deleted.
func (r *Reconciler) ServersLoaded(present map[string]bool) {
	r.mu.Lock()
	for id, w := range r.workers {
		if !present[id] {
			w.want = nil
			w.poke()
		}
	}
	r.serversReady = true
	r.maybeLoadedLocked()
	r.mu.Unlock()
}

// PutUser sets a user's desired state. An update that changes nothing Xray
// holds (usage counters, name, note, limits) is dropped here.
func (r *Reconciler) PutUser(u user.User) {
	m := memberOf(u)
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.users[u.ID]
	switch {
	case m == nil && old == nil:
		return
	case m != nil && old != nil && m.key == old.key:
		return
	case m == nil:
		delete(r.users, u.ID)
	default:
		r.users[u.ID] = m
	}
	if u.TraceParent != "" {
		r.traces[u.ID] = u.TraceParent
	} else {
		delete(r.traces, u.ID)
	}
	r.dirtyLocked(u.ID)
}

// DeleteUser removes a user from every server.
func (r *Reconciler) DeleteUser(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.traces, id)
	if _, ok := r.users[id]; ok {
		delete(r.users, id)
		r.dirtyLocked(id)
	}
}

// UsersLoaded ends a snapshot of the users bucket: users not in present
// are removed, and every server checks all its users against Xray, since
// a snapshot may follow changes this reconciler never saw.
func (r *Reconciler) UsersLoaded(present map[string]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id := range r.users {
		if !present[id] {
			delete(r.users, id)
		}
	}
	r.usersLoaded = true
	for _, w := range r.workers {
		w.resync = true
		w.poke()
	}
	r.maybeLoadedLocked()
}

func (r *Reconciler) maybeLoadedLocked() {
	if r.usersLoaded && r.serversReady {
		select {
		case <-r.loaded:
		default:
			close(r.loaded)
		}
	}
}

func (r *Reconciler) dirtyLocked(id string) {
	if !r.usersLoaded {
		return // the snapshot's end syncs everything
	}
	for _, w := range r.workers {
		w.dirty[id] = struct{}{}
		w.poke()
	}
}

func (r *Reconciler) resyncAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		w.resync = true
		w.poke()
	}
}

// Observe takes a runtime event: a start (or restart) of a server's Xray
// makes its worker check which instance runs and repair its users.
func (r *Reconciler) Observe(ev runtime.Event) {
	switch ev.Kind {
	case runtime.EventStart, runtime.EventRestart, runtime.EventDie:
	default:
		return
	}
	id, ok := strings.CutPrefix(strings.TrimPrefix(ev.Name, "/"), workloadPrefix)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.workers[id]; w != nil {
		w.checkInstance = true
		w.poke()
	}
}

// workloadPrefix is what server.WorkloadName puts before a server id.
var workloadPrefix = strings.TrimSuffix(server.WorkloadName("x"), "x")

// Servers lists the servers whose Xray runs now, sorted by id.
func (r *Reconciler) Servers() []RunningServer {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RunningServer
	for _, w := range r.workers {
		if w.running != nil {
			out = append(out, *w.running)
		}
	}
	slices.SortFunc(out, func(a, b RunningServer) int { return strings.Compare(a.ServerID, b.ServerID) })
	return out
}

// ServerStat is what the agent's metrics say of one server: the state it
// last reported (applied, failed; empty before its first outcome) and how
// many users its Xray holds.
type ServerStat struct {
	ServerID string
	State    server.State
	Users    int
}

// Stats lists every desired server's last outcome, by server id.
func (r *Reconciler) Stats() []ServerStat {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ServerStat, 0, len(r.workers))
	for id, w := range r.workers {
		if w.want == nil {
			continue
		}
		st := w.stat
		st.ServerID = id
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ServerStat) int { return strings.Compare(a.ServerID, b.ServerID) })
	return out
}

// removeOrphans stops and removes Xray workloads, and forgets data dirs,
// of servers that are not desired here, on every runtime of the node. It
// runs once the snapshots are in. (A second Xray of a desired server, left
// by a hand-over cut short, is its worker's to remove: see adopt.)
func (r *Reconciler) removeOrphans(ctx context.Context) {
	r.mu.Lock()
	known := map[string]bool{}
	for id := range r.workers {
		known[id] = true
	}
	r.mu.Unlock()
	for _, rt := range r.rts.All() {
		ws, err := rt.List(ctx)
		if err != nil {
			r.log.Warn("listing workloads for orphans", logkey.Runtime, rt.Kind(), logkey.Err, err)
			return // the data dirs of what it runs must stay
		}
		for _, w := range ws {
			id := w.Labels[LabelServer]
			if w.Labels[LabelRole] != RoleXray || id == "" || known[id] {
				continue
			}
			r.log.Info("removing xray of a server not desired here", logkey.Server, id, logkey.Runtime, rt.Kind(), logkey.Workload, w.Name)
			if err := rt.Remove(ctx, w.ID); err != nil && !errors.Is(err, errs.NotFound) {
				r.log.Warn("removing orphaned xray", logkey.Workload, w.Name, logkey.Err, err)
			}
		}
	}
	entries, _ := os.ReadDir(r.cfg.DataDir)
	for _, e := range entries {
		if e.IsDir() && !known[e.Name()] {
			_ = reclaimConfig(filepath.Join(r.cfg.DataDir, e.Name()))
			_ = os.RemoveAll(filepath.Join(r.cfg.DataDir, e.Name()))
		}
	}
}

// desiredOn returns, for each inbound of spec, the users Xray should hold
// there with their fingerprints; only ids in only count when only is
// non-nil.
func (r *Reconciler) desiredOn(spec xray.Spec, only map[string]struct{}) map[string]map[string]desiredUser {
	out := make(map[string]map[string]desiredUser, len(spec.Inbounds))
	for _, in := range spec.Inbounds {
		out[in.Tag] = map[string]desiredUser{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	add := func(id string, m *member) {
		for _, in := range spec.Inbounds {
			u, fp, ok := m.on(in)
			if !ok {
				continue
			}
			if err := in.ValidateUser(u); err != nil {
				r.log.Debug("user cannot be served on inbound", logkey.User, id, logkey.Inbound, in.Tag, logkey.Err, err)
				continue
			}
			out[in.Tag][id] = desiredUser{user: u, fp: fp}
		}
	}
	if only != nil {
		for id := range only {
			if m := r.users[id]; m != nil {
				add(id, m)
			}
		}
		return out
	}
	for id, m := range r.users {
		add(id, m)
	}
	return out
}

// userCounts says how far an Xray running spec, holding ap, is from the
// desired users: how many users are desired on it, how many of them it
// holds with their current credentials on every inbound they belong on,
// how many users it holds that are not desired there, and how many users
// it holds at all.
func (r *Reconciler) userCounts(spec xray.Spec, ap applied) (desired, held, extra, holding int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, m := range r.users {
		want, ok, some := false, true, false
		for _, in := range spec.Inbounds {
			_, fp, on := m.on(in)
			if !on {
				continue
			}
			want = true
			got, has := ap[in.Tag][id]
			ok = ok && got == fp
			some = some || has
		}
		if want {
			desired++
			if ok {
				held++
			}
			if some {
				holding++
			}
		}
	}
	excess := map[string]struct{}{}
	for _, in := range spec.Inbounds {
		for id := range ap[in.Tag] {
			m := r.users[id]
			if m == nil {
				excess[id] = struct{}{}
				continue
			}
			if _, _, on := m.on(in); !on {
				excess[id] = struct{}{}
			}
		}
	}
	for id := range excess {
		if m := r.users[id]; m == nil || !m.heldOn(spec, ap, id) {
			holding++ // not counted among the desired users it holds
		}
	}
	return desired, held, len(excess), holding
}

// heldOn reports whether ap holds user id on an inbound of spec where m is
// desired.
func (m *member) heldOn(spec xray.Spec, ap applied, id string) bool {
	for _, in := range spec.Inbounds {
		if _, _, on := m.on(in); on {
			if _, has := ap[in.Tag][id]; has {
				return true
			}
		}
	}
	return false
}

type desiredUser struct {
	user xray.User
	fp   string
}
