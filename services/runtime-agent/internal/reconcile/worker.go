package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.opentelemetry.io/otel/codes"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// worker reconciles one server. Its goroutine owns everything below the
// line; the fields above it are guarded by Reconciler.mu and are how the
// rest of the reconciler asks it for work.
type worker struct {
	r    *Reconciler
	id   string
	name string // the workload's name
	dir  string // <data dir>/<server id>
	log  *slog.Logger
	wake chan struct{}

	// Guarded by r.mu.
	want          *server.Server      // nil: delete the server
	dirty         map[string]struct{} // users whose desired state may have changed
	resync        bool                // compare every user with Xray
	checkInstance bool                // a runtime event: which Xray runs now?
	running       *RunningServer      // what Servers reports
	stat          ServerStat          // what Stats reports

	// Owned by the worker goroutine.
	cur         *instance
	applied     applied
	adopted     bool          // adoption was tried
	failed      string        // server.SpecKey of a spec that cannot work: not retried until it changes
	reported    server.Status // last status recorded (State, Reason, user counts)
	reportedKey string        // spec key it was recorded for
	// countsAt is when user counts were last recorded; countsDue says
	// newer counts wait for statusEvery to pass since (a change of state
	// or reason is recorded at once).
	countsAt  time.Time
	countsDue bool
	unsaved   bool // applied changed since it was saved
	// statusDue holds a status to record that could not be yet (NATS
	// down); it is retried with the rest.
	statusDue *statusReport
	// toCut holds users removed from the current Xray whose open sessions
	// are still to be ended (a failed cut is retried with the rest).
	toCut map[string]struct{}
	// noSessionControl is the instance found unable to end sessions (a
	// stock Xray), so that it is said once, not on every removal.
	noSessionControl string
	// changed counts the users added to or removed from Xray in this step.
	changed int
}

// instance is the Xray the worker runs.
type instance struct {
	rt        runtime.Runtime // where it runs
	workload  string
	startedAt time.Time
	pid       int
	api       string
	spec      xray.Spec // inbounds without users
	specKey   string
	hash      string        // config hash
	server    server.Server // the desired record it was deployed from
	client    *xray.Client
}

func (in *instance) id() string {
	return in.workload + "@" + in.startedAt.UTC().Format(time.RFC3339Nano)
}

type statusReport struct {
	srv server.Server
	st  server.Status
	err error
}

func newWorker(r *Reconciler, id string) *worker {
	return &worker{
		r: r, id: id, name: server.WorkloadName(id),
		dir:   filepath.Join(r.cfg.DataDir, id),
		log:   r.log.With(logkey.Server, id),
		wake:  make(chan struct{}, 1),
		dirty: map[string]struct{}{},
	}
}

// poke wakes the worker; the caller holds r.mu or not, either is fine.
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) statePath() string    { return filepath.Join(w.dir, "applied.json") }
func (w *worker) deployedPath() string { return filepath.Join(w.dir, "deployed.json") }

// run is the worker's loop: wait for work (or a retry), do it, repeat,
// until ctx ends or the server is deleted and torn down.
func (w *worker) run(ctx context.Context) error {
	defer w.closeClient()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = w.r.cfg.MaxBackoff
	bo.MaxElapsedTime = 0
	bo.Reset()
	var retry, flush <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			w.save()
			return nil
		case <-w.wake:
		case <-retry:
		case <-flush:
			flush = nil
		}
		retry = nil
		done, err := w.step(ctx)
		if done {
			return nil
		}
		if w.countsDue && flush == nil {
			flush = time.After(time.Until(w.countsAt.Add(statusEvery)))
		}
		if ctx.Err() != nil {
			continue
		}
		if err != nil {
			d := bo.NextBackOff()
			w.log.Warn("reconciling server, retrying", logkey.Err, err, logkey.Delay, d)
			retry = time.After(d)
			continue
		}
		bo.Reset()
	}
}

// step does the work asked for so far. It reports done once the server is
// deleted and its workload removed.
func (w *worker) step(ctx context.Context) (done bool, err error) {
	r := w.r
	r.mu.Lock()
	if !r.usersLoaded && w.want != nil {
		r.mu.Unlock()
		return false, nil // the end of the users snapshot wakes every worker
	}
	want, dirty, resync, check := w.want, w.dirty, w.resync, w.checkInstance
	w.dirty, w.resync, w.checkInstance = map[string]struct{}{}, false, false
	r.mu.Unlock()
	// Whatever is not done is asked for again.
	defer func() {
		if err == nil || done {
			return
		}
		r.mu.Lock()
		for id := range dirty {
			w.dirty[id] = struct{}{}
		}
		w.resync = w.resync || resync
		w.checkInstance = w.checkInstance || check
		r.mu.Unlock()
	}()

	if want == nil {
		return w.teardown(ctx)
	}
	if !w.adopted {
		w.adopted = true
		w.adopt(ctx, *want)
		resync = true
	}
	if w.statusDue != nil {
		if err := w.record(ctx, *w.statusDue); err != nil {
			return false, err
		}
	}
	key, full := specKey(*want), want.SpecKey()
	if full != w.failed {
		switch rt, err := w.target(*want); {
		case err != nil:
			w.failed = full
			w.fail(ctx, *want, err)
		case w.cur == nil || w.cur.specKey != key || w.cur.rt != rt:
			if err := w.deploy(ctx, *want, rt, key); err != nil {
				return false, err
			}
			resync = w.cur != nil
		}
	}
	if w.cur == nil {
		return false, nil
	}
	if check || resync {
		switch fresh, err := w.inspect(ctx); {
		case err != nil:
			return false, err
		case fresh:
			resync = true
		}
	}
	w.changed = 0
	if resync {
		err = w.syncAll(ctx)
	} else if len(dirty) > 0 {
		err = w.syncSome(ctx, dirty)
	}
	w.save()
	if w.changed >= burstUsers {
		releaseAfterBurst()
	}
	holding := 0
	if w.cur.specKey == key && (want.Runtime == "" || string(w.cur.rt.Kind()) == want.Runtime) {
		// What runs is what is wanted: say how many of its users it
		// holds (applied only when exactly the desired ones).
		holding = w.reportUsers(ctx, *want, err)
	}
	w.publishStat(holding)
	return false, err
}

// statusEvery spaces the status writes that only change user counts
// (users come and go while the server stays applied); a change of state
// or reason is written at once.
const statusEvery = 2 * time.Second

// reportUsers reports the running Xray, which serves want's spec, as
// applied when it holds exactly the desired users and partial otherwise,
// with the counts and cause, the error of the step that left it so. It
// returns how many users the Xray holds.
func (w *worker) reportUsers(ctx context.Context, want server.Server, cause error) int {
	desired, held, extra, holding := w.r.userCounts(w.cur.spec, w.applied)
	st := server.Status{
		State: server.StateApplied, PublicHost: w.r.cfg.PublicHost, AppliedRevision: w.cur.server.Revision,
		UsersDesired: desired, UsersApplied: held, UsersExtra: extra, Runtime: string(w.cur.rt.Kind()),
	}
	if held != desired || extra > 0 {
		st.State = server.StatePartial
		if cause != nil {
			st.Reason, st.Code = cause.Error(), errs.CodeOf(cause)
		}
	}
	if w.reportedKey == want.SpecKey() && w.reported.State == st.State && w.reported.Reason == st.Reason && w.statusDue == nil &&
		!sameCounts(w.reported, st) && time.Since(w.countsAt) < statusEvery {
		w.countsDue = true
		return holding
	}
	w.report(ctx, want, st, cause)
	return holding
}

func sameCounts(a, b server.Status) bool {
	return a.UsersDesired == b.UsersDesired && a.UsersApplied == b.UsersApplied && a.UsersExtra == b.UsersExtra
}

// publishStat makes the outcome of the last step what Stats reports.
func (w *worker) publishStat(holding int) {
	st := ServerStat{ServerID: w.id, State: w.reported.State, Users: holding}
	w.r.mu.Lock()
	w.stat = st
	w.r.mu.Unlock()
}

// target is the runtime want runs on: the one it names, else the one its
// Xray runs on now (changing the node's default moves nothing), else the
// node's default. A runtime the node lacks is errs.Invalid on "runtime".
func (w *worker) target(want server.Server) (runtime.Runtime, error) {
	switch {
	case want.Runtime != "":
		return w.r.rts.Lookup(runtime.Kind(want.Runtime))
	case w.cur != nil:
		return w.cur.rt, nil
	}
	return w.r.rts.Default(), nil
}

// adopt takes over an Xray left running by a previous agent, on whichever
// runtime of the node it runs: the workload named for the server with its
// labels, and the record of what was applied to that very instance. When
// more than one runtime runs one (a hand-over cut short by a crash), the
// one on the runtime want names is kept, else the first found (default
// first), and the others are removed: a server never serves twice.
func (w *worker) adopt(ctx context.Context, want server.Server) {
	type found struct {
		rt runtime.Runtime
		wl runtime.Workload
	}
	var all []found
	for _, rt := range w.r.rts.All() {
		if wl, err := rt.Inspect(ctx, w.name); err == nil {
			all = append(all, found{rt, wl})
		}
	}
	usable := func(f found) bool {
		l := f.wl.Labels
		return l[LabelServer] == w.id && l[LabelRole] == RoleXray && l[LabelAPI] != "" && f.wl.State == runtime.StateRunning
	}
	pick := slices.IndexFunc(all, func(f found) bool { return usable(f) && string(f.rt.Kind()) == want.Runtime })
	if pick < 0 {
		pick = slices.IndexFunc(all, usable)
	}
	if pick < 0 {
		return // deploy replaces whatever there is
	}
	for i, f := range all {
		if i == pick {
			continue
		}
		w.log.Warn("removing a second xray of this server", logkey.Runtime, f.rt.Kind(), logkey.Workload, f.wl.ID, logkey.Detail, "kept the one on "+string(all[pick].rt.Kind()))
		if err := f.rt.Remove(ctx, f.wl.ID); err != nil && !errors.Is(err, errs.NotFound) {
			w.log.Error("removing a second xray of this server", logkey.Runtime, f.rt.Kind(), logkey.Err, err)
		}
	}
	rt, wl := all[pick].rt, all[pick].wl
	api := wl.Labels[LabelAPI]
	client, err := xray.NewClient(api, w.log, w.r.cfg.XrayLimits)
	if err != nil {
		return
	}
	// What it runs was recorded when it was deployed; the label says
	// whether the record is of this very config.
	in := &instance{
		rt: rt, workload: wl.ID, startedAt: wl.StartedAt, pid: wl.PID, api: api, client: client,
		specKey: wl.Labels[LabelSpecKey], hash: wl.Labels[LabelConfigHash],
	}
	dep, ok := loadDeployed(w.deployedPath())
	if !ok || configHash(dep.Spec) != in.hash || dep.Spec.APIListen != api {
		// Unknown config: keep it serving until a deploy replaces it, with
		// no inbound known (so none is touched) and a key nothing matches.
		w.log.Warn("adopting xray with an unknown config; it will be replaced", logkey.Workload, wl.Name)
		in.specKey = ""
	} else {
		in.spec, in.server = dep.Spec, dep.Server
		// The record says what the workload runs, not that it is what this
		// agent would run: its options (--allow-private-networks, the log
		// level) may have changed since. A config that differs from the one
		// the agent would build for the same server is redeployed, as any
		// desired-state change is; its inbounds are known meanwhile.
		want, err := xraySpec(dep.Server, w.r.cfg.Node, api, w.specOptions())
		if err != nil || configHash(want) != in.hash || wl.Labels[LabelPrivileges] != w.r.privilegesFor(rt, want).label() {
			w.log.Info("adopted xray runs other agent options; it will be redeployed", logkey.Workload, wl.Name)
			in.specKey = ""
		}
	}
	w.setInstance(in)
	st := loadState(w.statePath())
	w.applied = applied{}
	if st.Instance == in.id() && st.Users != nil {
		w.applied = st.Users
	}
	w.log.Info("adopted running xray", logkey.Runtime, rt.Kind(), logkey.Workload, wl.Name, logkey.Instance, in.id(), logkey.KnownUsers, w.knownCount())
}

func (w *worker) knownCount() int {
	n := 0
	for _, m := range w.applied {
		n += len(m)
	}
	return n
}

func (w *worker) specOptions() specOptions {
	return specOptions{allowPrivate: w.r.cfg.AllowPrivateNetworks, logLevel: w.r.cfg.XrayLogLevel}
}

// inspect checks which Xray instance runs. A different one (restarted by
// its policy, or by hand) started with no users: what was applied is void.
// It reports whether the instance is new.
func (w *worker) inspect(ctx context.Context) (bool, error) {
	wl, err := w.cur.rt.Inspect(ctx, w.cur.workload)
	if err != nil {
		return false, fmt.Errorf("inspecting xray: %w", err)
	}
	if wl.State != runtime.StateRunning {
		return false, errs.New(errs.Unavailable, "xray is %s (exit code %d); waiting for it to run again", wl.State, wl.ExitCode)
	}
	if wl.StartedAt.Equal(w.cur.startedAt) && wl.ID == w.cur.workload {
		return false, nil
	}
	next := *w.cur
	next.workload, next.startedAt, next.pid = wl.ID, wl.StartedAt, wl.PID
	w.log.Info("xray restarted; adding its users again", logkey.Instance, next.id())
	w.setInstance(&next)
	w.applied = applied{}
	w.unsaved = true
	// The API answers a little after the process starts.
	if err := w.waitAPI(ctx, &next); err != nil {
		return true, err
	}
	return true, nil
}

// setInstance makes in the current instance and publishes it for Servers.
func (w *worker) setInstance(in *instance) {
	if w.cur != nil && (in == nil || w.cur.client != in.client) {
		_ = w.cur.client.Close()
		// The sessions to cut were the old instance's.
		clear(w.toCut)
	}
	w.cur = in
	var rs *RunningServer
	if in != nil {
		rs = &RunningServer{ServerID: w.id, Workload: in.workload, Instance: in.id(), Client: in.client}
	}
	w.r.mu.Lock()
	w.running = rs
	w.r.mu.Unlock()
}

func (w *worker) closeClient() {
	if w.cur != nil {
		_ = w.cur.client.Close()
	}
	w.r.mu.Lock()
	w.running = nil
	w.r.mu.Unlock()
}

// syncAll compares every inbound's users in Xray with the desired ones and
// repairs the difference: users Xray has that were not recorded are
// replaced once (their credentials are unknown), missing ones added,
// extra ones removed.
func (w *worker) syncAll(ctx context.Context) error {
	if w.applied == nil {
		w.applied = applied{}
	}
	for _, in := range w.cur.spec.Inbounds {
		ids, err := w.cur.client.InboundUsers(ctx, in)
		if err != nil {
			return fmt.Errorf("drift check of %s: %w", in.Tag, err)
		}
		ap := w.applied.inbound(in.Tag)
		have := make(map[string]bool, len(ids))
		for _, id := range ids {
			have[id] = true
			if _, ok := ap[id]; !ok {
				ap[id] = unknownFP
				w.unsaved = true
			}
		}
		for id := range ap {
			if !have[id] {
				delete(ap, id)
				w.unsaved = true
			}
		}
	}
	return w.apply(ctx, w.r.desiredOn(w.cur.spec, nil), nil)
}

// syncSome applies the desired state of the users in ids.
func (w *worker) syncSome(ctx context.Context, ids map[string]struct{}) error {
	if w.applied == nil {
		w.applied = applied{}
	}
	spans := w.r.traceApply(ctx, w.id, ids)
	err := w.apply(ctx, w.r.desiredOn(w.cur.spec, ids), ids)
	for _, sp := range spans {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
	return err
}

// apply makes Xray hold desired, for the users in only (every user when
// only is nil): per inbound, one batch of removals (gone users and old
// credentials) then one batch of additions.
func (w *worker) apply(ctx context.Context, desired map[string]map[string]desiredUser, only map[string]struct{}) error {
	var errList []error
	if w.toCut == nil {
		w.toCut = map[string]struct{}{}
	}
	type change struct {
		in      xray.Inbound
		removes []string
		adds    []xray.User
		addFPs  []string
	}
	var changes []change
	for _, in := range w.cur.spec.Inbounds {
		want := desired[in.Tag]
		ap := w.applied.inbound(in.Tag)
		ch := change{in: in}
		consider := func(id string) {
			d, ok := want[id]
			fp, has := ap[id]
			switch {
			case ok && has && fp == d.fp:
			case ok && has:
				ch.removes = append(ch.removes, id)
				ch.adds, ch.addFPs = append(ch.adds, d.user), append(ch.addFPs, d.fp)
			case ok:
				ch.adds, ch.addFPs = append(ch.adds, d.user), append(ch.addFPs, d.fp)
			case has:
				ch.removes = append(ch.removes, id)
			}
		}
		if only != nil {
			for id := range only {
				consider(id)
			}
		} else {
			for id := range ap {
				consider(id)
			}
			for id := range want {
				if _, has := ap[id]; !has {
					consider(id)
				}
			}
		}
		if len(ch.removes) > 0 {
			slices.Sort(ch.removes)
			if err := w.cur.client.RemoveUsers(ctx, in, ch.removes); err != nil {
				errList = append(errList, err)
				continue
			}
			for _, id := range ch.removes {
				delete(ap, id)
				w.toCut[id] = struct{}{}
			}
			w.unsaved = true
		}
		changes = append(changes, ch)
	}
	// End the removed users' open sessions (and retry earlier cuts that
	// failed) before anyone is added: a user whose credentials changed
	// comes back only with the new ones.
	if err := w.cutSessions(ctx); err != nil {
		errList = append(errList, err)
	}
	for _, ch := range changes {
		ap := w.applied.inbound(ch.in.Tag)
		if len(ch.adds) > 0 {
			if err := w.cur.client.AddUsers(ctx, ch.in, ch.adds); err != nil {
				errList = append(errList, err)
				continue
			}
			for i, u := range ch.adds {
				ap[u.ID] = ch.addFPs[i]
			}
			w.unsaved = true
		}
		w.changed += len(ch.removes) + len(ch.adds)
		if len(ch.removes)+len(ch.adds) > 0 {
			w.log.Debug("users applied", logkey.Inbound, ch.in.Tag, logkey.Added, len(ch.adds), logkey.Removed, len(ch.removes))
		}
	}
	return errors.Join(errList...)
}

// cutSessions ends the open sessions of the users in toCut, which were
// removed from Xray: their new connections are refused already, but
// connections opened before keep running until they are cut. An Xray
// without the session extension (a stock build) cannot: that is logged
// once per instance (the node record says it too) and the users are let
// go; any other failure keeps them for the next try.
func (w *worker) cutSessions(ctx context.Context) error {
	if len(w.toCut) == 0 || w.cur == nil {
		return nil
	}
	ids := make([]string, 0, len(w.toCut))
	for id := range w.toCut {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	closed, err := w.cur.client.CutUsers(ctx, ids)
	switch {
	case errs.CodeOf(err) == errs.CodeUnsupported:
		if w.noSessionControl != w.cur.id() {
			w.noSessionControl = w.cur.id()
			w.log.Warn("this xray cannot end open sessions: removed users keep the connections they have until their clients close them (run vpn-xray, `make xray`)", logkey.Err, err)
		}
	case err != nil:
		return fmt.Errorf("ending the sessions of %d removed users: %w", len(ids), err)
	case closed > 0:
		w.log.Info("sessions of removed users ended", logkey.Removed, len(ids), logkey.Sessions, closed)
	}
	clear(w.toCut)
	return nil
}

// save records what was applied, if it changed.
func (w *worker) save() {
	if !w.unsaved || w.cur == nil {
		return
	}
	if err := saveState(w.statePath(), stateFile{Instance: w.cur.id(), Users: w.applied}); err != nil {
		w.log.Warn("saving applied users", logkey.Err, err)
		return
	}
	w.unsaved = false
}

// deploy makes the running Xray serve want on runtime rt: it checks the
// spec and the host, then replaces the workload (on whichever runtime it
// runs: a server that moves stops on one and starts on the other). A spec that cannot work (invalid, a
// port taken) is reported as failed and leaves what runs alone; the
// returned error asks for a retry (a taken port may be freed, an engine
// may come back), except for an invalid spec, which waits for a change.
func (w *worker) deploy(ctx context.Context, want server.Server, rt runtime.Runtime, key string) error {
	api, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	spec, err := xraySpec(want, w.r.cfg.Node, api, w.specOptions())
	if err != nil {
		w.failed = want.SpecKey()
		w.fail(ctx, want, err)
		return nil
	}
	var held []xray.Inbound
	if w.cur != nil {
		held = w.cur.spec.Inbounds
	}
	if err := portsFree(spec.Inbounds, held); err != nil {
		w.fail(ctx, want, err)
		return err
	}
	image, command, mounts, err := w.r.workloadImage(ctx, rt, w.dir)
	if err != nil {
		w.fail(ctx, want, err)
		return err
	}
	cfg, err := xray.BuildConfig(spec)
	if err != nil {
		w.failed = want.SpecKey()
		w.fail(ctx, want, err)
		return nil
	}
	hash := configHash(spec)
	priv := w.r.privilegesFor(rt, spec)
	if err := writeConfig(w.dir, cfg, priv); err != nil {
		return err
	}
	if err := saveDeployed(w.deployedPath(), deployed{Spec: spec, Server: want}); err != nil {
		return err
	}
	rs := runtime.Spec{
		Name: w.name, Image: image, Command: command, Mounts: mounts,
		Labels: map[string]string{
			LabelRole: RoleXray, LabelServer: w.id, LabelConfigHash: hash,
			LabelSpecKey: key, LabelAPI: api,
		},
		Restart: runtime.RestartPolicy{Name: runtime.RestartAlways},
	}
	priv.apply(&rs)
	prev := w.cur
	if err := w.replace(ctx, rt, rs); err != nil {
		err = fmt.Errorf("starting xray on %s: %w", rt.Kind(), err)
		w.restore(ctx, prev)
		w.fail(ctx, want, err)
		return err
	}
	wl, err := rt.Inspect(ctx, w.name)
	if err != nil {
		return fmt.Errorf("inspecting new xray: %w", err)
	}
	client, err := xray.NewClient(api, w.log, w.r.cfg.XrayLimits)
	if err != nil {
		return err
	}
	in := &instance{
		rt: rt, workload: wl.ID, startedAt: wl.StartedAt, pid: wl.PID, api: api, spec: spec,
		specKey: key, hash: hash, server: want, client: client,
	}
	if err := w.waitReady(ctx, in); err != nil {
		_ = client.Close()
		w.restore(ctx, prev)
		w.fail(ctx, want, err)
		return err
	}
	w.setInstance(in)
	w.applied = applied{}
	w.unsaved = true
	w.failed = ""
	if prev != nil && prev.rt != rt {
		w.log.Info("server moved", logkey.Runtime, prev.rt.Kind(), logkey.Target, rt.Kind())
	}
	w.log.Info("xray deployed", logkey.Runtime, rt.Kind(), logkey.Workload, w.name, logkey.ConfigHash, hash, logkey.Revision, want.Revision)
	// Its users are added next: partial (0 of n) until they are.
	w.reportUsers(ctx, want, nil)
	return nil
}

// retire tells the Retiring hook that the running instance is about to go.
func (w *worker) retire(ctx context.Context) {
	if w.cur != nil && w.r.cfg.Retiring != nil {
		w.r.cfg.Retiring(ctx, RunningServer{ServerID: w.id, Workload: w.cur.workload, Instance: w.cur.id(), Client: w.cur.client})
	}
}

// replace removes whatever runs under the workload's name, on every
// runtime (the current Xray first), and starts rs on rt: stop, then start,
// on the same ports.
func (w *worker) replace(ctx context.Context, rt runtime.Runtime, rs runtime.Spec) error {
	w.retire(ctx)
	rts := w.r.rts.All()
	if w.cur != nil {
		rts = append([]runtime.Runtime{w.cur.rt}, rts...)
	}
	for _, old := range rts {
		if err := old.Remove(ctx, w.name); err != nil && !errors.Is(err, errs.NotFound) {
			return fmt.Errorf("removing old xray from %s: %w", old.Kind(), err)
		}
	}
	if _, err := rt.Create(ctx, rs); err != nil {
		return err
	}
	return rt.Start(ctx, w.name)
}

// restore brings back the instance a failed deploy replaced, with its own
// config (still on disk) and API address; its users are added again.
func (w *worker) restore(ctx context.Context, prev *instance) {
	if prev == nil {
		for _, rt := range w.r.rts.All() {
			_ = rt.Remove(ctx, w.name)
		}
		w.setInstance(nil)
		return
	}
	image, command, mounts, err := w.r.workloadImage(ctx, prev.rt, w.dir)
	priv := w.r.privilegesFor(prev.rt, prev.spec)
	if err == nil {
		cfg, berr := xray.BuildConfig(prev.spec)
		if err = berr; err == nil {
			err = writeConfig(w.dir, cfg, priv)
		}
	}
	if err == nil {
		err = saveDeployed(w.deployedPath(), deployed{Spec: prev.spec, Server: prev.server})
	}
	if err == nil {
		rs := runtime.Spec{
			Name: w.name, Image: image, Command: command, Mounts: mounts,
			Labels: map[string]string{
				LabelRole: RoleXray, LabelServer: w.id, LabelConfigHash: prev.hash,
				LabelSpecKey: prev.specKey, LabelAPI: prev.api,
			},
			Restart: runtime.RestartPolicy{Name: runtime.RestartAlways},
		}
		priv.apply(&rs)
		err = w.replace(ctx, prev.rt, rs)
	}
	if err != nil {
		w.log.Error("restoring the previous xray", logkey.Err, err)
		w.setInstance(nil)
		return
	}
	w.log.Warn("previous xray restored after a failed deploy", logkey.Runtime, prev.rt.Kind())
	// The worker finds the new instance (and re-adds users) on its next
	// instance check.
	w.r.mu.Lock()
	w.checkInstance, w.resync = true, true
	w.r.mu.Unlock()
}

// waitReady waits until in's API answers and every inbound listens,
// failing early (with the end of its output) when Xray exits.
func (w *worker) waitReady(ctx context.Context, in *instance) error {
	ctx, cancel := context.WithTimeout(ctx, w.r.cfg.ReadyTimeout)
	defer cancel()
	if err := w.waitAPI(ctx, in); err != nil {
		return err
	}
	for _, ib := range in.spec.Inbounds {
		addr := dialAddr(ib).String()
		if err := poll(ctx, func() error { return dialOnce(ctx, addr) }, w.exited(in)); err != nil {
			return fmt.Errorf("waiting for inbound %s on %s: %w", ib.Tag, addr, err)
		}
	}
	return nil
}

func (w *worker) waitAPI(ctx context.Context, in *instance) error {
	ctx, cancel := context.WithTimeout(ctx, w.r.cfg.ReadyTimeout)
	defer cancel()
	if err := poll(ctx, func() error { return in.client.Ping(ctx) }, w.exited(in)); err != nil {
		return fmt.Errorf("waiting for the xray api on %s: %w", in.api, err)
	}
	return nil
}

// exited returns a check that fails once in's workload no longer runs,
// with the last lines it wrote.
func (w *worker) exited(in *instance) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		wl, err := in.rt.Inspect(ctx, in.workload)
		if err != nil || wl.State == runtime.StateRunning {
			return nil
		}
		return errs.New(errs.Invalid, "xray exited with code %d: %s", wl.ExitCode, w.tail(ctx, in.rt, in.workload))
	}
}

// tail returns the last lines a workload wrote, on one line.
func (w *worker) tail(ctx context.Context, rt runtime.Runtime, id string) string {
	s, err := rt.Logs(ctx, id, runtime.LogOptions{Tail: 5})
	if err != nil {
		return "(no output)"
	}
	var lines []string
	for l := range s.C {
		lines = append(lines, strings.TrimSpace(l.Text))
	}
	if len(lines) == 0 {
		return "(no output)"
	}
	return strings.Join(lines, " | ")
}

// teardown removes the server's workload and files once it is deleted.
func (w *worker) teardown(ctx context.Context) (bool, error) {
	w.retire(ctx)
	for _, rt := range w.r.rts.All() {
		if err := rt.Remove(ctx, w.name); err != nil && !errors.Is(err, errs.NotFound) {
			return false, fmt.Errorf("removing xray of deleted server from %s: %w", rt.Kind(), err)
		}
	}
	w.setInstance(nil)
	if err := reclaimConfig(w.dir); err != nil {
		w.log.Warn("removing server files", logkey.Err, err)
	}
	if err := os.RemoveAll(w.dir); err != nil {
		w.log.Warn("removing server files", logkey.Err, err)
	}
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.want != nil {
		return false, nil // put back meanwhile: deploy again
	}
	delete(w.r.workers, w.id)
	w.log.Info("server removed")
	return true, nil
}

// fail reports that want could not be applied.
func (w *worker) fail(ctx context.Context, want server.Server, err error) {
	w.log.Warn("server not applied", logkey.Revision, want.Revision, logkey.Err, err)
	st := server.Status{State: server.StateFailed, Reason: err.Error(), Code: errs.CodeOf(err), AppliedRevision: w.appliedRevision()}
	if w.cur != nil {
		st.Runtime = string(w.cur.rt.Kind()) // what still serves
	}
	w.report(ctx, want, st, err)
}

// appliedRevision is the revision of the spec that runs, kept in a
// failed status so readers know what still serves.
func (w *worker) appliedRevision() uint64 {
	if w.cur == nil {
		return 0
	}
	return w.cur.server.Revision
}

// report records a status and publishes its event, once per outcome. A
// status that cannot be recorded now (NATS down) is retried by step.
func (w *worker) report(ctx context.Context, srv server.Server, st server.Status, cause error) {
	key := srv.SpecKey()
	if w.reportedKey == key && w.reported.State == st.State && w.reported.Reason == st.Reason && sameCounts(w.reported, st) && w.statusDue == nil {
		return // the same outcome for the same spec (the record's revision moves with every status write)
	}
	st.Time = time.Now().UTC()
	w.reported, w.reportedKey = st, key
	w.countsAt, w.countsDue = time.Now(), false
	rep := statusReport{srv: srv, st: st, err: cause}
	if err := w.record(ctx, rep); err != nil {
		w.log.Warn("recording server status, will retry", logkey.Err, err)
	}
}

// record writes a status and enqueues its event; on failure it is kept
// for the next step.
func (w *worker) record(ctx context.Context, rep statusReport) error {
	if err := w.r.status.SetStatus(ctx, rep.srv, rep.st); err != nil {
		w.statusDue = &rep
		return err
	}
	w.statusDue = nil
	payload := event.ServerStatus{
		Server: w.id, Node: w.r.cfg.Node, Revision: rep.srv.Revision, State: string(rep.st.State),
		Reason: rep.st.Reason, Fields: errs.FieldsOf(rep.err), Time: rep.st.Time,
	}
	typ, id := event.ServerApplied, fmt.Sprintf("%s:%d:applied", w.id, rep.srv.Revision)
	if rep.st.State == server.StateFailed {
		sum := sha256.Sum256([]byte(rep.st.Reason))
		typ, id = event.ServerFailed, fmt.Sprintf("%s:%d:failed:%s", w.id, rep.srv.Revision, hex.EncodeToString(sum[:4]))
	} else {
		payload.PublicHost = rep.st.PublicHost
	}
	if w.cur != nil {
		payload.Workload, payload.ConfigHash = w.cur.workload, w.cur.hash
	}
	if w.r.emit != nil && rep.st.State != server.StatePartial {
		// Partial is progress (or a stuck apply, which health alerts on
		// from the status), not an outcome of the spec.
		if err := w.r.emit(ctx, subject.ServerStatusEvent(w.r.cfg.Node, w.id), typ, id, payload); err != nil {
			w.log.Error("buffering server event", logkey.Err, err)
		}
	}
	return nil
}

// writeConfig stores the config Xray reads, replacing the previous one
// atomically (a running Xray has read its own already), owned by the user
// Xray runs as (mode 0600: it holds private keys).
func writeConfig(dir string, cfg []byte, priv xrayPrivileges) error {
	if err := reclaimConfig(dir); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "config", "config.json"), cfg, 0o600, false); err != nil {
		return err
	}
	return priv.handConfig(dir)
}
