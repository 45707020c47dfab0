package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/meter"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/reconcile"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// usageMeter reads every running Xray's traffic counters into the meter on
// an interval, and once more for an Xray the reconciler is about to remove,
// so the bytes of its last interval are not lost with it.
type usageMeter struct {
	mu  sync.Mutex // the meter is driven by the loop and by the reconciler's hook
	m   *meter.Meter
	log *slog.Logger
}

// lastWindow is the number of the last window recorded: its end in Unix
// milliseconds (0 before the first).
func (u *usageMeter) lastWindow() uint64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m.Window()
}

// run observes every interval until ctx ends, then once more.
func (u *usageMeter) run(ctx context.Context, every time.Duration, servers func() []reconcile.RunningServer) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			u.observe(fctx, servers())
			cancel()
			return nil
		case <-t.C:
			u.observe(ctx, servers())
		}
	}
}

// retiring is the reconciler's hook: read the leaving instance now, keep
// the others as they are.
func (u *usageMeter) retiring(ctx context.Context, s reconcile.RunningServer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	r := read(ctx, s)
	if _, err := u.m.ObserveOne(r); err != nil {
		u.log.Error("recording usage of a retiring xray", logkey.Server, s.ServerID, logkey.Err, err)
	}
}

// observe reads every running server (an unreadable one keeps its last
// values) and records the round.
func (u *usageMeter) observe(ctx context.Context, servers []reconcile.RunningServer) {
	readings := make([]meter.Reading, 0, len(servers))
	for _, s := range servers {
		readings = append(readings, read(ctx, s))
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, err := u.m.Observe(readings); err != nil {
		u.log.Error("recording usage", logkey.Err, err)
	}
}

// read takes one reading of s; Counters stays nil when Xray does not answer.
func read(ctx context.Context, s reconcile.RunningServer) meter.Reading {
	r := meter.Reading{Instance: s.Instance}
	traffic, err := s.Client.UserTraffic(ctx)
	if err != nil {
		return r
	}
	r.Counters = make(map[string]meter.Counter, len(traffic))
	for id, t := range traffic {
		r.Counters[id] = meter.Counter{Up: t.Uplink, Down: t.Downlink}
	}
	return r
}
