// Package sessions is the session extension of vpnfleet's Xray build
// (cmd/vpn-xray). It runs inside Xray, not in the agent.
//
// Xray can remove a user from an inbound, which refuses the user's next
// connection, but it has no way to end the connections the user already
// has open: a disabled or over-quota user keeps a long download going for
// as long as the client holds it. This package closes that gap with a
// Tracker that takes the place of Xray's dispatcher (every inbound hands
// each proxied connection to the dispatcher, already knowing its user) and
// wraps the real one:
//
//   - it records every connection by user, with the client connection
//     Xray accepted, and SessionService.CutUsers closes exactly the
//     connections of the users named: other users behind the same address
//     are untouched;
//   - it turns off splice (kernel zero-copy), which hands a whole transfer
//     to the kernel and lets Xray count its bytes only when the connection
//     ends, so a user's counters grow while the bytes flow;
//   - it counts a user's downlink where the bytes leave for the client
//     (Xray's own counter counts them when the destination sends them, so
//     bytes still buffered when a connection is cut would be counted but
//     never delivered). Together with Xray's uplink counter, a cut
//     connection's usage is what the client exchanged.
//
// Install rewrites a loaded Xray config to use the Tracker and to serve
// SessionService on Xray's API.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/xtls/xray-core/app/commander"
	"github.com/xtls/xray-core/app/dispatcher"
	"github.com/xtls/xray-core/app/policy"
	"github.com/xtls/xray-core/common"
	"github.com/xtls/xray-core/common/net"
	"github.com/xtls/xray-core/common/serial"
	"github.com/xtls/xray-core/common/session"
	"github.com/xtls/xray-core/core"
	"github.com/xtls/xray-core/features/routing"
	"github.com/xtls/xray-core/features/stats"
	"github.com/xtls/xray-core/transport"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
)

// Install makes a loaded Xray config use the session extension: the
// Tracker in place of Xray's dispatcher, SessionService on the API (when
// the config has one), and Xray's own per-user downlink counting off
// (the Tracker counts it instead, where it was on). It fails if the config
// has no dispatcher, which every config built from JSON has.
func Install(cfg *core.Config) error {
	dispatcherAt := -1
	downlink := false
	for i, app := range cfg.App {
		switch app.Type {
		case serial.GetMessageType(&dispatcher.Config{}):
			dispatcherAt = i
		case serial.GetMessageType(&commander.Config{}):
			inst, err := app.GetInstance()
			if err != nil {
				return fmt.Errorf("reading api config: %w", err)
			}
			c := inst.(*commander.Config)
			c.Service = append(c.Service, serial.ToTypedMessage(&sessionpb.ServiceConfig{}))
			cfg.App[i] = serial.ToTypedMessage(c)
		case serial.GetMessageType(&policy.Config{}):
			inst, err := app.GetInstance()
			if err != nil {
				return fmt.Errorf("reading policy config: %w", err)
			}
			p := inst.(*policy.Config)
			for _, level := range p.GetLevel() {
				if level.GetStats().GetUserDownlink() {
					downlink = true
					level.Stats.UserDownlink = false
				}
			}
			cfg.App[i] = serial.ToTypedMessage(p)
		}
	}
	if dispatcherAt < 0 {
		return errors.New("installing the session extension: the config has no dispatcher")
	}
	cfg.App[dispatcherAt] = serial.ToTypedMessage(&sessionpb.Config{UserDownlink: downlink})
	return nil
}

// VersionMarker is the line `vpn-xray version` prints after Xray's own.
const VersionMarker = sessionpb.VersionMarker

func init() {
	common.Must(common.RegisterConfig((*sessionpb.Config)(nil), func(ctx context.Context, config any) (any, error) {
		inner, err := common.CreateObject(ctx, &dispatcher.Config{})
		if err != nil {
			return nil, err
		}
		t := &Tracker{
			inner:    inner.(routing.Dispatcher),
			downlink: config.(*sessionpb.Config).GetUserDownlink(),
			byUser:   map[string]map[*conn]struct{}{},
		}
		if err := core.RequireFeatures(ctx, func(sm stats.Manager) { t.stats = sm }); err != nil {
			return nil, err
		}
		return t, nil
	}))
	common.Must(common.RegisterConfig((*sessionpb.ServiceConfig)(nil), func(ctx context.Context, _ any) (any, error) {
		s := &service{}
		if err := core.RequireFeatures(ctx, func(d routing.Dispatcher) { s.tracker, _ = d.(*Tracker) }); err != nil {
			return nil, err
		}
		return s, nil
	}))
}

// Tracker is Xray's dispatcher with sessions tracked by user. It is a
// routing.Dispatcher feature.
type Tracker struct {
	inner    routing.Dispatcher
	stats    stats.Manager
	downlink bool

	mu     sync.Mutex
	byUser map[string]map[*conn]struct{}
}

// Type implements common.HasType: the Tracker is the dispatcher.
func (*Tracker) Type() any { return routing.DispatcherType() }

// Start implements common.Runnable.
func (t *Tracker) Start() error { return t.inner.Start() }

// Close implements common.Closable.
func (t *Tracker) Close() error { return t.inner.Close() }

// Dispatch implements routing.Dispatcher. The inbound reads what the
// destination sends from the returned link and writes it to the client.
func (t *Tracker) Dispatch(ctx context.Context, dest net.Destination) (*transport.Link, error) {
	c := t.open(ctx)
	link, err := t.inner.Dispatch(ctx, dest)
	if err != nil || c == nil {
		return link, err
	}
	r := &downReader{c: c, r: link.Reader}
	c.addInterrupt(func() { common.Interrupt(link.Reader) })
	link.Reader = r
	return link, nil
}

// DispatchLink implements routing.Dispatcher. The destination's bytes go
// to link.Writer, which writes to the client.
func (t *Tracker) DispatchLink(ctx context.Context, dest net.Destination, link *transport.Link) error {
	c := t.open(ctx)
	if c != nil {
		link.Writer = &downWriter{c: c, w: link.Writer}
	}
	return t.inner.DispatchLink(ctx, dest, link)
}

// open starts tracking the connection of ctx, if it has a user: nil
// otherwise. Tracking ends when ctx ends (Xray cancels a connection's
// context when the connection is done).
func (t *Tracker) open(ctx context.Context) *conn {
	in := session.InboundFromContext(ctx)
	if in == nil || in.User == nil || in.User.Email == "" {
		return nil
	}
	// Splice would copy the rest of the transfer in the kernel and count it
	// only at the end.
	in.CanSpliceCopy = 3
	c := &conn{user: in.User.Email, client: in.Conn, handoff: make(chan struct{}, 1)}
	if t.downlink && t.stats != nil {
		c.down, _ = stats.GetOrRegisterCounter(t.stats, "user>>>"+c.user+">>>traffic>>>downlink")
	}
	t.mu.Lock()
	set := t.byUser[c.user]
	if set == nil {
		set = map[*conn]struct{}{}
		t.byUser[c.user] = set
	}
	set[c] = struct{}{}
	t.mu.Unlock()
	context.AfterFunc(ctx, func() { t.forget(c) })
	return c
}

func (t *Tracker) forget(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	set := t.byUser[c.user]
	delete(set, c)
	if len(set) == 0 {
		delete(t.byUser, c.user)
	}
}

// Cut ends every tracked connection of the users named and returns how
// many it closed. Users without connections are skipped.
func (t *Tracker) Cut(users []string) int {
	var conns []*conn
	t.mu.Lock()
	for _, u := range users {
		for c := range t.byUser[u] {
			conns = append(conns, c)
		}
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	var closed atomic.Int64
	for _, c := range conns {
		wg.Go(func() {
			if c.cut() {
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	return int(closed.Load())
}

// Sessions counts tracked connections per user.
func (t *Tracker) Sessions() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]int, len(t.byUser))
	for u, set := range t.byUser {
		out[u] = len(set)
	}
	return out
}
