package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/services/health/internal/history"
	"github.com/vpnfleet/vpnfleet/services/health/internal/metrics"
	"github.com/vpnfleet/vpnfleet/services/health/internal/nodehealth"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
)

// active is the evaluator's state for one term of the lease.
type active struct {
	s      *service
	fleet  *nodehealth.Fleet
	ds     *history.Downsampler
	health jetstream.KeyValue
	// servers is what nodes report of their servers' users.
	servers *serverUsers

	evalMu    sync.Mutex
	eval      *alert.Evaluator
	unapplied []event.Alert

	mu        sync.Mutex
	consumers []metrics.Consumer
	users     map[string]string
	online    map[string]time.Time
	usageHW   map[string]uint64
	firing    []event.Alert
}

// activeRef is the current term's state, nil on a standby replica.
type activeRef struct {
	mu sync.Mutex
	a  *active
}

func (r *activeRef) get() *active {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.a
}

func (r *activeRef) set(a *active) {
	r.mu.Lock()
	r.a = a
	r.mu.Unlock()
}

// errLeaseLost ends a term whose lease another replica now holds.
var errLeaseLost = errors.New("evaluator lease lost")

// lead takes the evaluator lease whenever it is free and evaluates while
// holding it, until ctx ends; then it releases the lease so a standby
// takes over at once.
func (s *service) lead(ctx context.Context) error {
	kv, err := s.env.JS.KeyValue(ctx, subject.BucketHealthLease)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketHealthLease)
	}
	for {
		rev, err := kv.Create(ctx, subject.HealthLeaseKey, []byte(s.holder))
		if err == nil {
			err = s.term(ctx, kv, rev)
			if ctx.Err() != nil {
				return nil
			}
			s.env.Log.Warn("evaluator term ended", logkey.Err, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.LeaseRetry):
		}
	}
}

// term evaluates while renewing the lease, and releases it at the end.
func (s *service) term(ctx context.Context, kv jetstream.KeyValue, rev uint64) error {
	s.env.Log.Info("evaluator lease taken", logkey.Holder, s.holder)
	var last uint64 = rev
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		t := time.NewTicker(subject.HealthLeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
			r, err := kv.Update(gctx, subject.HealthLeaseKey, []byte(s.holder), last)
			if err != nil {
				if gctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("%w: %v", errLeaseLost, err)
			}
			last = r
		}
	})
	g.Go(func() error {
		a, err := s.activate(gctx)
		if err != nil {
			return err
		}
		s.active.set(a)
		defer s.active.set(nil)
		return a.run(gctx)
	})
	err := g.Wait()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if derr := kv.Delete(rctx, subject.HealthLeaseKey, jetstream.LastRevision(last)); derr == nil {
		s.env.Log.Info("evaluator lease released")
	}
	return err
}

// activate builds a term's state from what the previous evaluator stored:
// node health (since, workloads, exits) and alerts (firing ones resolve
// when their condition clears; resolved ones keep their cooldown).
func (s *service) activate(ctx context.Context) (*active, error) {
	hkv, err := s.env.JS.KeyValue(ctx, subject.BucketNodeHealth)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketNodeHealth)
	}
	a := &active{
		s: s, fleet: nodehealth.New(s.cfg.fleet()), ds: history.New(s.cfg.history()), health: hkv,
		eval:    alert.NewEvaluator(s.rules),
		servers: newServerUsers(),
		users:   map[string]string{}, online: map[string]time.Time{}, usageHW: map[string]uint64{},
	}
	lister, err := hkv.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, errs.Wrap(errs.Unavailable, err, "listing node health")
	}
	if lister != nil {
		for k := range lister.Keys() {
			e, err := hkv.Get(ctx, k)
			if err != nil {
				continue
			}
			var h event.NodeHealth
			if json.Unmarshal(e.Value(), &h) == nil {
				a.fleet.Restore(h)
			}
		}
	}
	alerts, err := s.store.All(ctx)
	if err != nil {
		return nil, err
	}
	for _, al := range alerts {
		if !al.Published {
			if al, err = s.store.Apply(ctx, al); err != nil {
				return nil, err
			}
		}
		a.eval.Adopt(al)
	}
	a.firing = a.eval.Firing()
	return a, nil
}

// run consumes and evaluates until ctx ends.
func (a *active) run(ctx context.Context) error {
	s := a.s
	js := s.env.JS
	consume := func(stream string, cfg jetstream.ConsumerConfig, h func(context.Context, json.RawMessage) error) error {
		c, err := js.CreateOrUpdateConsumer(ctx, stream, cfg)
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "creating consumer %s", cfg.Durable)
		}
		counted := func(ctx context.Context, m json.RawMessage) error {
			err := h(ctx, m)
			result := "ok"
			switch bus.Decide(err) {
			case bus.Term:
				result = "invalid"
			case bus.Retry:
				result = "retry"
			}
			s.metrics.Ingested.WithLabelValues(stream, result).Inc()
			return err
		}
		return bus.Consume(ctx, c, s.env.Log.With(logkey.Consumer, cfg.Durable), bus.ConsumeOptions{}, counted)
	}
	g, gctx := errgroup.WithContext(ctx)
	ctx = gctx
	g.Go(func() error { return consume(subject.StreamStats, subject.HealthStatsConsumer(), a.onStats) })
	g.Go(func() error { return consume(subject.StreamUsage, subject.HealthUsageConsumer(), a.onUsage) })
	g.Go(func() error { return consume(subject.StreamEvents, subject.HealthEventsConsumer(), a.onEvent) })
	g.Go(func() error { return a.watchNodes(ctx) })
	g.Go(func() error { return a.watchUsers(ctx) })
	g.Go(func() error { return a.watchServers(ctx) })
	g.Go(func() error { return a.watchServerStatus(ctx) })
	g.Go(func() error { return a.every(ctx, s.cfg.EvalInterval, a.tick) })
	g.Go(func() error { return a.every(ctx, s.cfg.LagInterval, a.readLag) })
	g.Go(func() error { return a.every(ctx, s.cfg.SweepInterval, a.sweep) })
	return g.Wait()
}

func (a *active) every(ctx context.Context, d time.Duration, f func(context.Context)) error {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// onStats handles one STATS message: a host sample or a workload sample,
// told apart by subject. Anything malformed is Invalid (terminated).
func (a *active) onStats(ctx context.Context, raw json.RawMessage) error {
	meta, _ := bus.MetaFrom(ctx)
	tokens := strings.Split(meta.Subject, ".") // vpn.stats.<node>.host | vpn.stats.<node>.workload.<w>
	now := time.Now()
	switch {
	case len(tokens) == 4 && tokens[3] == "host":
		var s node.HostStats
		if err := strictDecode(raw, &s); err != nil {
			return err
		}
		if err := checkSample(tokens[2], s.Node, s.Time, s.CPUPercent); err != nil {
			return err
		}
		a.fleet.Host(s, now)
		a.ds.Host(s)
	case len(tokens) == 5 && tokens[3] == "workload":
		var s node.WorkloadStats
		if err := strictDecode(raw, &s); err != nil {
			return err
		}
		if err := checkSample(tokens[2], s.Node, s.Time, s.CPUPercent); err != nil {
			return err
		}
		a.fleet.Workload(tokens[4], s, now)
		a.ds.Workload(tokens[4], s)
	default:
		return errs.New(errs.Invalid, "unexpected stats subject %s", meta.Subject)
	}
	return nil
}

func strictDecode(raw json.RawMessage, v any) error {
	if len(raw) == 0 || raw[0] != '{' {
		return errs.New(errs.Invalid, "stats message is not a JSON object")
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errs.Wrap(errs.Invalid, err, "decoding stats")
	}
	return nil
}

func checkSample(subjNode, node string, at time.Time, cpu float64) error {
	var fe []errs.FieldError
	if node != subjNode {
		fe = append(fe, errs.FieldError{Field: "node", Rule: fmt.Sprintf("must match the subject's node %q", subjNode)})
	}
	if at.IsZero() {
		fe = append(fe, errs.FieldError{Field: "time", Rule: "must be set"})
	}
	if cpu < 0 || math.IsNaN(cpu) || math.IsInf(cpu, 0) {
		fe = append(fe, errs.FieldError{Field: "cpu_percent", Rule: "must be a non-negative number"})
	}
	return errs.Fields(fe...)
}

// onUsage handles one usage record: node and user traffic history, the
// traffic counters and the online users. A node's windows only grow, so a
// window at or below the highest seen is a redelivery and is skipped.
func (a *active) onUsage(ctx context.Context, raw json.RawMessage) error {
	meta, _ := bus.MetaFrom(ctx)
	var r usage.Record
	if len(raw) == 0 || raw[0] != '{' {
		return errs.New(errs.Invalid, "usage message is not a JSON object")
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return errs.Wrap(errs.Invalid, err, "decoding usage record")
	}
	var fe []errs.FieldError
	if meta.Subject != "" && meta.Subject != subject.Usage(r.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "must match the subject"})
	}
	if r.Window == 0 {
		fe = append(fe, errs.FieldError{Field: "window", Rule: "must be positive"})
	}
	if r.End.IsZero() {
		fe = append(fe, errs.FieldError{Field: "end", Rule: "must be set"})
	}
	for i, u := range r.Users {
		if !subject.ValidToken(u.User) {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("users[%d].user", i), Rule: "must be a user id"})
		}
		if u.Uplink < 0 || u.Downlink < 0 {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("users[%d]", i), Rule: "traffic must not be negative"})
		}
	}
	if err := errs.Fields(fe...); err != nil {
		return err
	}
	a.mu.Lock()
	if r.Window <= a.usageHW[r.Node] {
		a.mu.Unlock()
		return nil
	}
	a.usageHW[r.Node] = r.Window
	for _, u := range r.Users {
		if u.Uplink+u.Downlink > 0 {
			a.online[u.User] = r.End
		}
	}
	a.mu.Unlock()
	a.ds.Usage(r)
	var up, down int64
	for _, u := range r.Users {
		up, down = up+u.Uplink, down+u.Downlink
		if ut := a.s.metrics.UserTraffic; ut != nil {
			ut.WithLabelValues(u.User, "uplink").Add(float64(u.Uplink))
			ut.WithLabelValues(u.User, "downlink").Add(float64(u.Downlink))
		}
	}
	a.s.metrics.Traffic.WithLabelValues(r.Node, "uplink").Add(float64(up))
	a.s.metrics.Traffic.WithLabelValues(r.Node, "downlink").Add(float64(down))
	return nil
}

// onEvent handles runtime, user and job events: runtime events move
// workload state; every event is offered to the event alert rules.
func (a *active) onEvent(ctx context.Context, raw json.RawMessage) error {
	var env event.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return errs.Wrap(errs.Invalid, err, "decoding event envelope")
	}
	if strings.HasPrefix(string(env.Type), subject.KindRuntime+".") {
		var ev node.RuntimeEvent
		if err := env.Decode(&ev); err != nil {
			return errs.Wrap(errs.Invalid, err, "decoding runtime event")
		}
		if !subject.ValidToken(ev.Node) || ev.Time.IsZero() {
			return errs.Field("node", "runtime event without a node or time")
		}
		a.fleet.Runtime(nodehealth.Token(ev.Workload, ev.Name), ev)
	}
	a.evalMu.Lock()
	changed := a.eval.Event(time.Now(), env.Type, env.Data)
	a.evalMu.Unlock()
	return a.apply(ctx, changed)
}

// apply stores and publishes alert transitions; what fails is kept and
// retried at the next tick.
func (a *active) apply(ctx context.Context, changed []event.Alert) error {
	var failed []event.Alert
	var firstErr error
	for _, al := range changed {
		stored, err := a.s.store.Apply(ctx, al)
		if err != nil {
			failed = append(failed, al)
			firstErr = cmpErr(firstErr, err)
			continue
		}
		a.evalMu.Lock()
		if stored.Status == al.Status {
			a.eval.Adopt(stored)
		}
		a.evalMu.Unlock()
		a.s.env.Log.Info("alert "+stored.Status, "rule", stored.Rule, "fingerprint", stored.Fingerprint, "labels", stored.Labels)
	}
	a.evalMu.Lock()
	a.unapplied = append(a.unapplied, failed...)
	a.evalMu.Unlock()
	if firstErr != nil {
		a.s.env.Log.Warn("storing alerts, will retry", logkey.Err, firstErr, logkey.Count, len(failed))
	}
	return nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// tick judges node health, evaluates metric rules and writes history.
func (a *active) tick(ctx context.Context) {
	now := time.Now()
	for _, c := range a.fleet.Judge(now) {
		if err := a.storeHealth(ctx, c); err != nil {
			a.s.env.Log.Warn("storing node health", logkey.Node, c.Health.Node, logkey.Err, err)
		}
	}
	samples := append(a.fleet.Samples(now), a.servers.samples()...)
	a.mu.Lock()
	for _, c := range a.consumers {
		samples = append(samples, alert.Sample{Metric: "consumer_pending", Labels: map[string]string{"stream": c.Stream, "consumer": c.Name}, Value: float64(c.Pending)})
	}
	a.mu.Unlock()
	a.evalMu.Lock()
	retry := a.unapplied
	a.unapplied = nil
	changed := append(retry, a.eval.Eval(now, samples)...)
	a.evalMu.Unlock()
	_ = a.apply(ctx, changed)
	a.evalMu.Lock()
	firing := a.eval.Firing()
	a.evalMu.Unlock()
	a.mu.Lock()
	a.firing = firing
	a.mu.Unlock()

	for _, p := range a.ds.Flush(now) {
		if _, err := bus.Publish(ctx, a.s.env.JS, p.Subject, p.MsgID, p.Payload); err != nil && ctx.Err() == nil {
			a.s.env.Log.Warn("writing history point", logkey.Subject, p.Subject, logkey.Err, err)
		}
	}
}

// storeHealth writes a node's new judgement and, on a state change,
// publishes health.changed.v1.
func (a *active) storeHealth(ctx context.Context, c nodehealth.Change) error {
	data, err := json.Marshal(c.Health)
	if err != nil {
		return err
	}
	if _, err := a.health.Put(ctx, c.Health.Node, data); err != nil {
		return errs.Wrap(errs.Unavailable, err, "writing node health")
	}
	if c.Transition == nil {
		return nil
	}
	tr := *c.Transition
	a.s.env.Log.Info("node health changed", logkey.Node, tr.Node, logkey.From, tr.From, logkey.To, tr.To, logkey.Detail, tr.Reason)
	id := fmt.Sprintf("%s:%s:%d", tr.Node, tr.To, tr.Since.UnixNano())
	env, err := event.New(event.HealthChanged, id, "health", tr)
	if err != nil {
		return err
	}
	_, err = bus.PublishEvent(ctx, a.s.env.JS, subject.HealthEvent(tr.Node), env)
	return err
}

// watchNodes follows the nodes bucket: registrations and heartbeats.
func (a *active) watchNodes(ctx context.Context) error {
	kv, err := a.s.env.JS.KeyValue(ctx, subject.BucketNodes)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketNodes)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching %s", subject.BucketNodes)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			a.fleet.Remove(e.Key())
			continue
		}
		var n node.Node
		if err := json.Unmarshal(e.Value(), &n); err != nil || n.ID != e.Key() {
			a.s.env.Log.Warn("ignoring malformed node entry", logkey.Node, e.Key(), logkey.Err, err)
			continue
		}
		a.fleet.Registration(n)
	}
	return nil
}

// watchUsers follows the users bucket for the users-by-status gauge.
func (a *active) watchUsers(ctx context.Context) error {
	kv, err := a.s.env.JS.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketUsers)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching %s", subject.BucketUsers)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		var u struct {
			Status string `json:"status"`
		}
		a.mu.Lock()
		if e.Operation() != jetstream.KeyValuePut {
			delete(a.users, e.Key())
		} else if json.Unmarshal(e.Value(), &u) == nil {
			a.users[e.Key()] = u.Status
		}
		a.mu.Unlock()
	}
	return nil
}

// readLag reads the backlog of every durable consumer of the declared
// streams.
func (a *active) readLag(ctx context.Context) {
	var out []metrics.Consumer
	for _, sc := range subject.Streams(1) {
		st, err := a.s.env.JS.Stream(ctx, sc.Name)
		if err != nil {
			continue
		}
		infos := st.ListConsumers(ctx)
		for ci := range infos.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			out = append(out, metrics.Consumer{Stream: sc.Name, Name: ci.Name, Pending: ci.NumPending, AckPending: uint64(ci.NumAckPending)})
		}
	}
	a.mu.Lock()
	a.consumers = out
	a.mu.Unlock()
}

// sweep asks the agents of nodes with stopped servers which workloads they
// still have, and forgets the removed ones, so a deleted server does not
// stay "down" forever. A node that does not answer keeps its workloads.
func (a *active) sweep(ctx context.Context) {
	for id, names := range a.fleet.NotRunning() {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := bus.Request[node.WorkloadsReply](rctx, a.s.env.NC, subject.AgentCmd(id, node.CmdWorkloads), struct{}{})
		cancel()
		if err != nil {
			continue
		}
		have := map[string]bool{}
		for _, w := range reply.Workloads {
			have[nodehealth.Token(w.ID, w.Name)] = true
		}
		var gone []string
		for _, n := range names {
			if !have[n] {
				gone = append(gone, n)
			}
		}
		a.fleet.Forget(id, gone)
	}
}

// snapshot is the fleet view at scrape time.
func (s *service) snapshot() metrics.Snapshot {
	a := s.active.get()
	if a == nil {
		return metrics.Snapshot{}
	}
	now := time.Now()
	snap := metrics.Snapshot{Active: true, Nodes: a.fleet.View(now), Users: map[string]int{}, Servers: a.servers.behind()}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, st := range a.users {
		snap.Users[st]++
	}
	for u, at := range a.online {
		if now.Sub(at) <= s.cfg.OnlineWindow {
			snap.Online++
		} else {
			delete(a.online, u)
		}
	}
	snap.Consumers = append(snap.Consumers, a.consumers...)
	snap.Firing = append(snap.Firing, a.firing...)
	return snap
}
