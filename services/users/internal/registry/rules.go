package registry

import (
	"time"

	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// NextReset returns when counters last reset at last restart again under
// strategy r, and false when they never do.
func NextReset(r user.LimitReset, last time.Time) (time.Time, bool) {
	switch r {
	case user.ResetDay:
		return last.AddDate(0, 0, 1), true
	case user.ResetWeek:
		return last.AddDate(0, 0, 7), true
	case user.ResetMonth:
		return last.AddDate(0, 1, 0), true
	case user.ResetYear:
		return last.AddDate(1, 0, 0), true
	}
	return time.Time{}, false
}

// Outcome is what Settle changed.
type Outcome struct {
	// Reset is set when the periodic reset restarted the counters.
	Reset bool
	// Previous is the status before, and Reason why it changed; Reason is
	// empty when the status stayed.
	Previous user.Status
	Reason   string
}

// Changed reports whether Settle changed anything.
func (o Outcome) Changed() bool { return o.Reset || o.Reason != "" }

// Settle brings u in line with its limits at now: a due periodic reset
// restarts the counters; an active, limited or expired user becomes
// expired past ExpiresAt, limited at its traffic limit, and active
// otherwise. Disabled and on_hold users keep their status (on_hold ends at
// first use, in ApplyDelta).
func Settle(u *user.User, now time.Time) Outcome {
	out := Outcome{Previous: u.Status}
	last := u.Usage.ResetAt
	if last.IsZero() {
		last = u.CreatedAt
	}
	if next, ok := NextReset(u.LimitReset, last); ok && !now.Before(next) {
		u.Usage.UsedUp, u.Usage.UsedDown = 0, 0
		u.Usage.ResetAt = now
		out.Reset = true
	}
	if u.Status == user.StatusOnHold && !u.Usage.FirstUsedAt.IsZero() {
		// First used, but the status was not stored with the counters
		// (a crash in between): finish what ApplyDelta started.
		u.Status = user.StatusActive
		u.ExpiresAt = u.Usage.FirstUsedAt.AddDate(0, 0, u.OnHoldDays)
		out.Reason = user.ReasonFirstUse
	}
	switch u.Status {
	case user.StatusActive, user.StatusLimited, user.StatusExpired:
		switch {
		case !u.ExpiresAt.IsZero() && !now.Before(u.ExpiresAt):
			u.Status = user.StatusExpired
		case u.TrafficLimitBytes > 0 && u.Usage.Used() >= u.TrafficLimitBytes:
			u.Status = user.StatusLimited
		default:
			u.Status = user.StatusActive
		}
	}
	if u.Status != out.Previous {
		switch {
		case u.Status == user.StatusExpired:
			out.Reason = user.ReasonExpired
		case u.Status == user.StatusLimited:
			out.Reason = user.ReasonLimitReached
		case out.Reason == user.ReasonFirstUse:
		case out.Previous == user.StatusLimited && out.Reset:
			out.Reason = user.ReasonLimitReset
		default:
			out.Reason = user.ReasonUpdated
		}
	}
	return out
}

// NextDue is the first moment after now at which Settle would change u
// without any new traffic: its expiry or its next periodic reset. It is
// zero when there is none (or when Settle would change u already).
func NextDue(u user.User, now time.Time) time.Time {
	var next time.Time
	earlier := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	last := u.Usage.ResetAt
	if last.IsZero() {
		last = u.CreatedAt
	}
	if t, ok := NextReset(u.LimitReset, last); ok {
		earlier(t)
	}
	switch u.Status {
	case user.StatusActive, user.StatusLimited:
		if !u.ExpiresAt.IsZero() {
			earlier(u.ExpiresAt)
		}
	}
	return next
}

// ApplyDelta adds one user's traffic from window of node to u, unless u
// already counted that window (or a later one) from node; it reports
// whether it applied. The first traffic starts an on_hold user's clock.
func ApplyDelta(u *user.User, node string, window uint64, d usage.UserDelta, now time.Time) (applied bool, firstUse bool) {
	if u.Usage.Windows[node] >= window {
		return false, false
	}
	windows := make(map[string]uint64, len(u.Usage.Windows)+1)
	for k, v := range u.Usage.Windows {
		windows[k] = v
	}
	windows[node] = window
	u.Usage.Windows = windows
	u.Usage.UsedUp += d.Uplink
	u.Usage.UsedDown += d.Downlink
	u.Usage.LifetimeUp += d.Uplink
	u.Usage.LifetimeDown += d.Downlink
	seen := d.LastSeen
	if seen.IsZero() || seen.After(now) {
		seen = now
	}
	seen = seen.UTC()
	if d.Uplink+d.Downlink > 0 {
		if seen.After(u.Usage.LastSeenAt) {
			u.Usage.LastSeenAt = seen
		}
		if u.Usage.FirstUsedAt.IsZero() {
			u.Usage.FirstUsedAt = seen
		}
		if u.Status == user.StatusOnHold {
			u.Status = user.StatusActive
			u.ExpiresAt = seen.AddDate(0, 0, u.OnHoldDays)
			firstUse = true
		}
	}
	return true, firstUse
}
