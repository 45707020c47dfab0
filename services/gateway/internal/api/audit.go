package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// audit records who did what to what, and how it ended, on EVENTS. A
// refusal (4xx: denied, rate-limited, invalid, not found, conflicting)
// changed nothing, so refusals go through s.refusals, which keeps a caller
// from flooding the trail; everything else (successes, and 5xx, which may
// hide a change that did happen) is recorded alone, at once.
func (s *Server) audit(r *http.Request, rt Route, info *reqInfo) {
	status := info.rec.status
	result := event.AuditOK
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		result = event.AuditDenied
	case status >= 400:
		result = event.AuditError
	}
	target := info.target
	if target == "" && len(rt.params) > 0 {
		target = rt.params[0] + "/" + r.PathValue(rt.params[0])
	}
	actor := info.tok.ID
	if actor == "" {
		actor = event.ActorAnonymous
	}
	a := event.Audit{
		ID: info.id, Actor: actor, ActorName: info.tok.Name, Role: string(info.tok.Role),
		Action: rt.ID, Target: target, Result: result, Status: status, Code: info.code,
		Remote: clientIP(r), Time: time.Now().UTC(),
	}
	if status >= 400 && status < 500 && !s.refusals.first(a) {
		return // counted in the window's summary
	}
	s.publishAudit(r.Context(), a)
}

func (s *Server) publishAudit(ctx context.Context, a event.Audit) {
	env, err := event.New(event.AuditRecorded, "audit:"+a.ID, "gateway", a)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UpstreamTimeout)
		_, err = bus.PublishEvent(ctx, s.env.JS, subject.AuditEvent(a.Actor), env)
		cancel()
	}
	if err != nil {
		s.log.Error("publishing audit record", logkey.Endpoint, a.Action, logkey.Err, err)
	}
}

// refusals aggregates the audit records of refused calls. The first
// refusal of a kind (actor, action, status) opens a window and is recorded
// at once; the others within the window are counted, and when it ends one
// summary (event.Audit.Count) stands for them all. However fast a token
// is refused, it adds at most two records per kind and window.
type refusals struct {
	window  time.Duration
	publish func(context.Context, event.Audit)
	key     func(event.Audit) refusalKind

	mu     sync.Mutex
	open   map[refusalKind]*refusalWindow
	closed bool
	wg     sync.WaitGroup
}

type refusalKind struct {
	actor, action string
	status        int
}

type refusalWindow struct {
	last  event.Audit
	count int // refusals after the first
	timer *time.Timer
}

// maxRefusalKinds bounds the windows open at once; past it, a token's
// refusals of every action (every remote address's, for the log of
// unauthenticated calls) share one window.
const maxRefusalKinds = 10_000

func newRefusals(window time.Duration, publish func(context.Context, event.Audit)) *refusals {
	return newRefusalsBy(window, func(a event.Audit) refusalKind { return refusalKind{a.Actor, a.Action, a.Status} }, publish)
}

// newRefusalsBy is newRefusals with the kind of a refusal chosen by key.
func newRefusalsBy(window time.Duration, key func(event.Audit) refusalKind, publish func(context.Context, event.Audit)) *refusals {
	return &refusals{window: window, publish: publish, key: key, open: map[refusalKind]*refusalWindow{}}
}

// first reports whether a is the first refusal of its kind in a window,
// to be recorded now; otherwise it is counted for the window's summary.
func (f *refusals) first(a event.Audit) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.window <= 0 {
		return true
	}
	k := f.key(a)
	if _, ok := f.open[k]; !ok && len(f.open) >= maxRefusalKinds {
		k = refusalKind{actor: k.actor}
	}
	if w, ok := f.open[k]; ok {
		w.last, w.count = a, w.count+1
		return false
	}
	w := &refusalWindow{last: a}
	f.open[k] = w
	f.wg.Add(1)
	w.timer = time.AfterFunc(f.window, func() { f.flush(k, w) })
	return true
}

// flush ends window w of kind k and records its summary.
func (f *refusals) flush(k refusalKind, w *refusalWindow) {
	defer f.wg.Done()
	f.mu.Lock()
	if f.open[k] == w {
		delete(f.open, k)
	}
	sum := w.last
	sum.Count = w.count
	f.mu.Unlock()
	if sum.Count > 0 {
		f.publish(context.Background(), sum)
	}
}

// close ends every window now, recording their summaries, and waits for
// summaries being recorded; later refusals are recorded one by one.
func (f *refusals) close() {
	f.mu.Lock()
	f.closed = true
	var ending []func()
	for k, w := range f.open {
		if w.timer.Stop() {
			ending = append(ending, func() { f.flush(k, w) })
		}
	}
	f.mu.Unlock()
	for _, end := range ending {
		end()
	}
	f.wg.Wait()
}

// unauthenticatedLogWindow is how often one remote address's refused
// unauthenticated calls (401) may be logged.
const unauthenticatedLogWindow = time.Minute

// newUnauthenticatedLog keeps the log of 401s to one line per remote
// address and window, and a line counting the ones it suppressed when the
// window ends: a caller guessing tokens cannot flood the log, and an
// operator still sees that it happens and from where.
func (s *Server) newUnauthenticatedLog() *refusals {
	return newRefusalsBy(unauthenticatedLogWindow,
		func(a event.Audit) refusalKind { return refusalKind{action: a.Remote} },
		func(_ context.Context, a event.Audit) {
			if a.Count > 0 {
				s.log.Info("unauthenticated requests suppressed", logkey.Addr, a.Remote, logkey.Count, a.Count,
					logkey.Endpoint, a.Action, logkey.Detail, a.Code)
				return
			}
			s.log.Info("unauthenticated request refused", logkey.Addr, a.Remote, logkey.Endpoint, a.Action,
				logkey.Status, a.Status, logkey.Detail, a.Code)
		})
}

// unauthenticated logs (rate-limited) and audits a 401, under actor
// event.ActorAnonymous.
func (s *Server) unauthenticated(r *http.Request, rt Route, info *reqInfo) {
	a := event.Audit{
		ID: info.id, Actor: event.ActorAnonymous, Action: rt.ID, Result: event.AuditDenied,
		Status: info.rec.status, Code: info.code, Remote: clientIP(r), Time: time.Now().UTC(),
	}
	if s.unauthLog.first(a) {
		s.unauthLog.publish(r.Context(), a)
	}
	s.audit(r, rt, info)
}
