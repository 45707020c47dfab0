// Package health turns what agents report into fleet health, history,
// alerts and metrics. Every replica serves the query endpoints
// (vpn.health.*) and runs the notifiers; one replica at a time, the holder
// of the evaluator lease (a KV entry with TTL), consumes stats, usage and
// events, judges node health, evaluates alert rules and writes history.
// State lives in JetStream: node_health and alerts buckets, history
// streams, durable consumers; a replica that takes over picks it up.
package health

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/services/health/internal/history"
	"github.com/vpnfleet/vpnfleet/services/health/internal/metrics"
	"github.com/vpnfleet/vpnfleet/services/health/internal/nodehealth"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// Config is the health service's configuration (flags, VPN_HEALTH_* env,
// TOML keys with underscores).
type Config struct {
	RulesFile      string        `flag:"alert-rules" env:"VPN_HEALTH_ALERT_RULES" help:"alert rules and notifiers, TOML (empty: the built-in rules, no notifiers)"`
	DownAfter      time.Duration `flag:"node-down-after" env:"VPN_HEALTH_NODE_DOWN_AFTER" help:"a node without a heartbeat for this long is down (the grace)"`
	LagAfter       time.Duration `flag:"node-lag-after" env:"VPN_HEALTH_NODE_LAG_AFTER" help:"a node whose heartbeat or stats are this late is degraded (agent lagging)"`
	DegradedCPU    float64       `flag:"degraded-cpu" env:"VPN_HEALTH_DEGRADED_CPU" help:"host CPU percent at which a node is degraded"`
	DegradedMemory float64       `flag:"degraded-memory" env:"VPN_HEALTH_DEGRADED_MEMORY" help:"host memory percent at which a node is degraded"`
	DegradedDisk   float64       `flag:"degraded-disk" env:"VPN_HEALTH_DEGRADED_DISK" help:"host disk percent at which a node is degraded"`
	RestartWindow  time.Duration `flag:"restart-window" env:"VPN_HEALTH_RESTART_WINDOW" help:"how far back server exits count (workload_exits)"`
	RestartCount   int           `flag:"restart-count" env:"VPN_HEALTH_RESTART_COUNT" help:"exits within the restart window that mark a server restarting repeatedly"`
	EvalInterval   time.Duration `flag:"eval-interval" env:"VPN_HEALTH_EVAL_INTERVAL" help:"how often node health and alert rules are evaluated"`
	HistoryStep    time.Duration `flag:"history-step" env:"VPN_HEALTH_HISTORY_STEP" help:"step of fine history points (kept a day)"`
	HistoryCoarse  time.Duration `flag:"history-coarse-step" env:"VPN_HEALTH_HISTORY_COARSE_STEP" help:"step of coarse history points (kept 90 days)"`
	HistorySettle  time.Duration `flag:"history-settle" env:"VPN_HEALTH_HISTORY_SETTLE" help:"how long a closed step waits for late samples before its point is written"`
	LagInterval    time.Duration `flag:"consumer-lag-interval" env:"VPN_HEALTH_CONSUMER_LAG_INTERVAL" help:"how often JetStream consumer lag is read"`
	SweepInterval  time.Duration `flag:"workload-sweep" env:"VPN_HEALTH_WORKLOAD_SWEEP" help:"how often agents are asked whether stopped servers still exist"`
	LeaseRetry     time.Duration `flag:"lease-retry" env:"VPN_HEALTH_LEASE_RETRY" help:"how often a standby replica tries to take the evaluator lease"`
	OnlineWindow   time.Duration `flag:"online-window" env:"VPN_HEALTH_ONLINE_WINDOW" help:"users with traffic this recent count as online"`
	PerUserMetrics bool          `flag:"per-user-metrics" env:"VPN_HEALTH_PER_USER_METRICS" help:"export per-user traffic series (one series per user: mind the cardinality)"`
	NotifyRetry    time.Duration `flag:"notify-retry" env:"VPN_HEALTH_NOTIFY_RETRY" help:"first delay before a failed notification is retried (doubling)"`
	NotifyRetryMax time.Duration `flag:"notify-retry-max" env:"VPN_HEALTH_NOTIFY_RETRY_MAX" help:"longest delay between notification retries"`
	AlertRetention time.Duration `flag:"alert-retention" env:"VPN_HEALTH_ALERT_RETENTION" help:"how long resolved alerts stay listed"`
}

// Defaults returns the production defaults.
func Defaults() Config {
	return Config{
		DownAfter:      30 * time.Second,
		LagAfter:       15 * time.Second,
		DegradedCPU:    90,
		DegradedMemory: 90,
		DegradedDisk:   90,
		RestartWindow:  10 * time.Minute,
		RestartCount:   3,
		EvalInterval:   5 * time.Second,
		HistoryStep:    time.Minute,
		HistoryCoarse:  time.Hour,
		HistorySettle:  15 * time.Second,
		LagInterval:    15 * time.Second,
		SweepInterval:  time.Minute,
		LeaseRetry:     2 * time.Second,
		OnlineWindow:   5 * time.Minute,
		NotifyRetry:    time.Second,
		NotifyRetryMax: time.Minute,
		AlertRetention: 7 * 24 * time.Hour,
	}
}

// Validate checks the fields on their own; the rules file is checked by
// Run (and LoadRules).
func (c Config) Validate() error {
	var fe []errs.FieldError
	positive := func(field string, d time.Duration) {
		if d <= 0 {
			fe = append(fe, errs.FieldError{Field: field, Rule: "must be positive"})
		}
	}
	positive("node_down_after", c.DownAfter)
	positive("node_lag_after", c.LagAfter)
	positive("restart_window", c.RestartWindow)
	positive("eval_interval", c.EvalInterval)
	positive("history_step", c.HistoryStep)
	positive("history_settle", c.HistorySettle)
	positive("consumer_lag_interval", c.LagInterval)
	positive("workload_sweep", c.SweepInterval)
	positive("lease_retry", c.LeaseRetry)
	positive("online_window", c.OnlineWindow)
	positive("notify_retry", c.NotifyRetry)
	positive("notify_retry_max", c.NotifyRetryMax)
	positive("alert_retention", c.AlertRetention)
	if c.LagAfter >= c.DownAfter {
		fe = append(fe, errs.FieldError{Field: "node_lag_after", Rule: "must be shorter than node_down_after"})
	}
	if c.HistoryStep > 0 && (c.HistoryCoarse < c.HistoryStep || c.HistoryCoarse%c.HistoryStep != 0) {
		fe = append(fe, errs.FieldError{Field: "history_coarse_step", Rule: "must be a multiple of history_step"})
	}
	for _, p := range []struct {
		f string
		v float64
	}{{"degraded_cpu", c.DegradedCPU}, {"degraded_memory", c.DegradedMemory}, {"degraded_disk", c.DegradedDisk}} {
		if p.v <= 0 || p.v > 100 {
			fe = append(fe, errs.FieldError{Field: p.f, Rule: "must be a percentage in (0, 100]"})
		}
	}
	if c.RestartCount < 1 {
		fe = append(fe, errs.FieldError{Field: "restart_count", Rule: "must be at least 1"})
	}
	return errs.Fields(fe...)
}

func (c Config) fleet() nodehealth.Config {
	return nodehealth.Config{
		DownAfter: c.DownAfter, LagAfter: c.LagAfter,
		CPU: c.DegradedCPU, Memory: c.DegradedMemory, Disk: c.DegradedDisk,
		RestartWindow: c.RestartWindow, Restarts: c.RestartCount,
	}
}

func (c Config) history() history.Config {
	return history.Config{Fine: c.HistoryStep, Coarse: c.HistoryCoarse, Settle: c.HistorySettle}
}

// Run runs the health core until ctx ends. It refuses to start on an
// invalid configuration or rules file (an Invalid error naming the rule
// and field).
func Run(ctx context.Context, cfg Config, env svc.Env) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	rules, err := LoadRules(cfg.RulesFile)
	if err != nil {
		return err
	}
	s, err := newService(ctx, cfg, env, rules)
	if err != nil {
		return err
	}
	env.Log.Info("health starting", logkey.Rules, len(rules.Rules), logkey.Notifiers, len(rules.Notifiers), logkey.Path, cfg.RulesFile)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.serveAPI(gctx) })
	for _, n := range s.notifiers {
		g.Go(func() error { return s.runNotifier(gctx, n) })
	}
	g.Go(func() error { return s.lead(gctx) })
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// service is one replica.
type service struct {
	cfg       Config
	env       svc.Env
	rules     []alert.Rule
	store     *alert.Store
	notifiers []notifier
	metrics   *metrics.Collector
	holder    string

	active activeRef
}
