package registry_test

import (
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestSettle(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	base := user.User{Status: user.StatusActive, LimitReset: user.ResetNone, CreatedAt: t0, Usage: user.Usage{ResetAt: t0}}
	with := func(f func(u *user.User)) user.User { u := base; f(&u); return u }
	tests := []struct {
		name       string
		u          user.User
		now        time.Time
		wantStatus user.Status
		wantReason string
		wantReset  bool
	}{
		{"nothing due", base, t0.Add(time.Hour), user.StatusActive, "", false},
		{"expired", with(func(u *user.User) { u.ExpiresAt = t0.Add(time.Minute) }), t0.Add(time.Minute), user.StatusExpired, user.ReasonExpired, false},
		{"limit reached", with(func(u *user.User) { u.TrafficLimitBytes = 10; u.Usage.UsedUp = 10 }), t0, user.StatusLimited, user.ReasonLimitReached, false},
		{"under limit stays", with(func(u *user.User) { u.TrafficLimitBytes = 10; u.Usage.UsedUp = 9 }), t0, user.StatusActive, "", false},
		{"expiry wins over limit", with(func(u *user.User) {
			u.TrafficLimitBytes, u.Usage.UsedUp, u.ExpiresAt = 1, 5, t0
		}), t0, user.StatusExpired, user.ReasonExpired, false},
		{"daily reset frees limited", with(func(u *user.User) {
			u.Status, u.TrafficLimitBytes, u.Usage.UsedUp, u.LimitReset = user.StatusLimited, 10, 10, user.ResetDay
		}), t0.Add(24 * time.Hour), user.StatusActive, user.ReasonLimitReset, true},
		{"monthly reset not yet", with(func(u *user.User) {
			u.Status, u.TrafficLimitBytes, u.Usage.UsedUp, u.LimitReset = user.StatusLimited, 10, 10, user.ResetMonth
		}), t0.Add(27 * 24 * time.Hour), user.StatusLimited, "", false},
		{"weekly reset of active user", with(func(u *user.User) { u.LimitReset, u.Usage.UsedDown = user.ResetWeek, 3 }), t0.Add(7 * 24 * time.Hour), user.StatusActive, "", true},
		{"disabled untouched", with(func(u *user.User) { u.Status, u.ExpiresAt = user.StatusDisabled, t0 }), t0, user.StatusDisabled, "", false},
		{"on hold untouched", with(func(u *user.User) { u.Status, u.ExpiresAt = user.StatusOnHold, t0 }), t0, user.StatusOnHold, "", false},
		{"extended expiry revives", with(func(u *user.User) { u.Status, u.ExpiresAt = user.StatusExpired, t0.Add(time.Hour) }), t0, user.StatusActive, user.ReasonUpdated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := tt.u
			o := registry.Settle(&u, tt.now)
			if u.Status != tt.wantStatus || o.Reason != tt.wantReason || o.Reset != tt.wantReset {
				t.Fatalf("status %s reason %q reset %v; want %s %q %v", u.Status, o.Reason, o.Reset, tt.wantStatus, tt.wantReason, tt.wantReset)
			}
			if tt.wantReset && (u.Usage.Used() != 0 || !u.Usage.ResetAt.Equal(tt.now)) {
				t.Fatalf("reset left usage %+v", u.Usage)
			}
			if registry.Due(tt.u, tt.now) != o.Changed() {
				t.Fatal("Due disagrees with Settle")
			}
		})
	}
}

func TestApplyDeltaCountsEachWindowOnce(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	u := user.User{Status: user.StatusOnHold, OnHoldDays: 10}
	orig := u
	d := usage.UserDelta{Uplink: 3, Downlink: 4, LastSeen: now.Add(-time.Minute)}
	applied, first := registry.ApplyDelta(&u, "n1", 5, d, now)
	if !applied || !first || u.Status != user.StatusActive || !u.ExpiresAt.Equal(now.Add(-time.Minute).AddDate(0, 0, 10)) {
		t.Fatalf("first delta: applied=%v first=%v %+v", applied, first, u)
	}
	for _, w := range []uint64{5, 4, 1} {
		if applied, _ := registry.ApplyDelta(&u, "n1", w, d, now); applied {
			t.Fatalf("window %d applied again", w)
		}
	}
	if applied, _ := registry.ApplyDelta(&u, "n2", 1, d, now); !applied {
		t.Fatal("another node's window 1 not applied")
	}
	if u.Usage.Used() != 14 || u.Usage.LifetimeUp != 6 {
		t.Fatalf("usage %+v", u.Usage)
	}
	if orig.Usage.Windows != nil {
		t.Fatal("ApplyDelta changed the original's windows map")
	}
}

func TestNextDue(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	created := now.Add(-time.Hour)
	cases := []struct {
		name string
		u    user.User
		want time.Time
	}{
		{"nothing due", user.User{Status: user.StatusActive, CreatedAt: created, LimitReset: user.ResetNone}, time.Time{}},
		{"expiry", user.User{Status: user.StatusActive, CreatedAt: created, ExpiresAt: now.Add(time.Minute)}, now.Add(time.Minute)},
		{"limited user's expiry", user.User{Status: user.StatusLimited, CreatedAt: created, TrafficLimitBytes: 10, Usage: user.Usage{UsedDown: 20}, ExpiresAt: now.Add(time.Minute)}, now.Add(time.Minute)},
		{"expiry passed: due already, not later", user.User{Status: user.StatusActive, CreatedAt: created, ExpiresAt: now.Add(-time.Minute)}, time.Time{}},
		{"disabled users do not expire", user.User{Status: user.StatusDisabled, CreatedAt: created, ExpiresAt: now.Add(time.Minute)}, time.Time{}},
		{"reset before expiry", user.User{Status: user.StatusActive, CreatedAt: created, LimitReset: user.ResetDay, ExpiresAt: now.Add(48 * time.Hour)}, mustNextReset(t, user.ResetDay, created)},
	}
	for _, c := range cases {
		if got := registry.NextDue(c.u, now); !got.Equal(c.want) {
			t.Errorf("%s: NextDue = %s, want %s", c.name, got, c.want)
		}
		// Whatever NextDue names, Settle changes the user at that moment
		// and not a nanosecond before.
		if next := registry.NextDue(c.u, now); !next.IsZero() {
			if before := c.u; registry.Settle(&before, next.Add(-time.Nanosecond)).Changed() {
				t.Errorf("%s: Settle changes the user before NextDue", c.name)
			}
			if at := c.u; !registry.Settle(&at, next).Changed() {
				t.Errorf("%s: Settle does not change the user at NextDue", c.name)
			}
		}
	}
}

func mustNextReset(t *testing.T, r user.LimitReset, last time.Time) time.Time {
	t.Helper()
	next, ok := registry.NextReset(r, last)
	if !ok {
		t.Fatalf("no next reset for %s", r)
	}
	return next
}
