// Package waitfor polls a condition with a deadline, so tests synchronise
// on observable state instead of sleeping.
package waitfor

import (
	"testing"
	"time"
)

// Interval is how often conditions are polled.
const Interval = 10 * time.Millisecond

// Cond polls cond until it returns nil or timeout passes, then fails t with
// the last error.
func Cond(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	CondEvery(t, timeout, Interval, cond)
}

// CondEvery is Cond polling every interval, for conditions that are
// costly to ask (each poll starts a docker command, say).
func CondEvery(t testing.TB, timeout, interval time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		<-tick.C
	}
}
