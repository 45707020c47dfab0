package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/services/health/internal/history"
	"github.com/vpnfleet/vpnfleet/services/health/internal/metrics"
	"github.com/vpnfleet/vpnfleet/services/health/internal/notify"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// apiVersion is the version of the vpn.health.* request and reply types
// (semver, as micro requires).
const apiVersion = "1.0.0"

// requestTimeout bounds one query.
const requestTimeout = 10 * time.Second

// notifier is one configured receiver.
type notifier struct {
	*notify.Notifier
}

func newService(ctx context.Context, cfg Config, env svc.Env, rules RulesFile) (*service, error) {
	store, err := alert.NewStore(ctx, env.JS, "health")
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &service{
		cfg: cfg, env: env, rules: rules.Rules, store: store,
		holder: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano()),
	}
	for _, t := range rules.Notifiers {
		s.notifiers = append(s.notifiers, notifier{notify.New(t)})
	}
	s.metrics = metrics.Register(env.Metrics, cfg.PerUserMetrics, s.snapshot)
	return s, nil
}

// serveAPI serves the query endpoints until ctx ends.
func (s *service) serveAPI(ctx context.Context) error {
	ms, err := micro.AddService(s.env.NC, micro.Config{
		Name:        "health",
		Version:     apiVersion,
		Description: "fleet health, history and alerts",
		QueueGroup:  subject.HealthQueueGroup,
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "adding health service")
	}
	s.env.Requests.Add(ms)
	log := s.env.Log
	eps := []struct {
		name string
		h    micro.Handler
	}{
		{subject.HealthNodes, bus.Endpoint(ctx, log, requestTimeout, s.nodes)},
		{subject.HealthStats, bus.Endpoint(ctx, log, requestTimeout, s.stats)},
		{subject.HealthUsage, bus.Endpoint(ctx, log, requestTimeout, s.usage)},
		{subject.HealthAlerts, bus.Endpoint(ctx, log, requestTimeout, s.store.List)},
		{subject.HealthAck, bus.Endpoint(ctx, log, requestTimeout, s.store.Ack)},
	}
	for _, ep := range eps {
		if err := ms.AddEndpoint(ep.name, ep.h, micro.WithEndpointSubject(subject.HealthCmd(ep.name))); err != nil {
			_ = ms.Stop()
			return errs.Wrap(errs.Unavailable, err, "adding health endpoint %s", ep.name)
		}
	}
	<-ctx.Done()
	return ms.Stop()
}

func (s *service) nodes(ctx context.Context, req event.NodesRequest) (event.NodesReply, error) {
	if req.State != "" && !slices.Contains([]string{event.HealthHealthy, event.HealthDegraded, event.HealthDown}, req.State) {
		return event.NodesReply{}, errs.Field("state", "must be healthy, degraded or down")
	}
	kv, err := s.env.JS.KeyValue(ctx, subject.BucketNodeHealth)
	if err != nil {
		return event.NodesReply{}, errs.Wrap(errs.Unavailable, err, "opening node health")
	}
	get := func(k string) (event.NodeHealth, error) {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return event.NodeHealth{}, errs.New(errs.NotFound, "node %s has no health yet", k)
		}
		if err != nil {
			return event.NodeHealth{}, errs.Wrap(errs.Unavailable, err, "reading node health %s", k)
		}
		var h event.NodeHealth
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			return event.NodeHealth{}, errs.Wrap(errs.Internal, err, "decoding node health %s", k)
		}
		h.Workloads = trimExits(h.Workloads)
		return h, nil
	}
	if req.Node != "" {
		if !subject.ValidToken(req.Node) {
			return event.NodesReply{}, errs.Field("node", "must be a node id")
		}
		h, err := get(req.Node)
		if err != nil {
			return event.NodesReply{}, err
		}
		return event.NodesReply{Nodes: []event.NodeHealth{h}}, nil
	}
	out := []event.NodeHealth{}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return event.NodesReply{}, errs.Wrap(errs.Unavailable, err, "listing node health")
	}
	for k := range lister.Keys() {
		h, err := get(k)
		if errors.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return event.NodesReply{}, err
		}
		if req.State == "" || h.State == req.State {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b event.NodeHealth) int { return strings.Compare(a.Node, b.Node) })
	return event.NodesReply{Nodes: out}, nil
}

// trimExits leaves the exit times out of replies; Exits says how many.
func trimExits(ws []event.WorkloadHealth) []event.WorkloadHealth {
	for i := range ws {
		ws[i].ExitTimes = nil
	}
	return ws
}

func (s *service) stats(ctx context.Context, req event.StatsRequest) (event.StatsReply, error) {
	if !subject.ValidToken(req.Node) {
		return event.StatsReply{}, errs.Field("node", "must be a node id")
	}
	r, err := s.cfg.history().Plan(req.From, req.To, req.Step, time.Now())
	if err != nil {
		return event.StatsReply{}, err
	}
	pts, err := history.NodePoints(ctx, s.env.JS, r, req.Node)
	if err != nil {
		return event.StatsReply{}, err
	}
	return event.StatsReply{Node: req.Node, From: r.From, To: r.To, Step: r.Step, Resolution: r.Resolution, Points: pts}, nil
}

func (s *service) usage(ctx context.Context, req event.UsageRequest) (event.UsageReply, error) {
	if !subject.ValidToken(req.User) {
		return event.UsageReply{}, errs.Field("user", "must be a user id")
	}
	r, err := s.cfg.history().Plan(req.From, req.To, req.Step, time.Now())
	if err != nil {
		return event.UsageReply{}, err
	}
	pts, err := history.UserPoints(ctx, s.env.JS, r, req.User)
	if err != nil {
		return event.UsageReply{}, err
	}
	return event.UsageReply{User: req.User, From: r.From, To: r.To, Step: r.Step, Resolution: r.Resolution, Points: pts}, nil
}

// runNotifier delivers alert events to one receiver through its own
// durable consumer, retrying failed deliveries with growing delays.
func (s *service) runNotifier(ctx context.Context, n notifier) error {
	cc := subject.NotifierConsumer(n.Name())
	c, err := s.env.JS.CreateOrUpdateConsumer(ctx, subject.StreamEvents, cc)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "creating consumer %s", cc.Durable)
	}
	defer n.Close()
	log := s.env.Log.With(logkey.Consumer, cc.Durable)
	opts := bus.ConsumeOptions{RetryBase: s.cfg.NotifyRetry, RetryMax: s.cfg.NotifyRetryMax, Timeout: 2 * requestTimeout}
	return bus.Consume(ctx, c, log, opts, func(ctx context.Context, env event.Envelope) error {
		err := n.Deliver(ctx, env)
		result := "ok"
		switch bus.Decide(err) {
		case bus.Term:
			result = "refused"
		case bus.Retry:
			result = "retry"
		}
		s.metrics.Notifications.WithLabelValues(n.Name(), result).Inc()
		return err
	})
}
