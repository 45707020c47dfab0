package meter

import (
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/shared/usage"
)

// sink collects queued records; fail makes Add fail.
type sink struct {
	msgs []outbox.Msg
	fail bool
}

func (s *sink) Add(m outbox.Msg) error {
	if s.fail {
		return errors.New("disk full")
	}
	s.msgs = append(s.msgs, m)
	return nil
}

func (s *sink) records(t *testing.T) []usage.Record {
	t.Helper()
	var out []usage.Record
	for _, m := range s.msgs {
		var r usage.Record
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if m.MsgID != r.MsgID() {
			t.Fatalf("msg id %q for record %q", m.MsgID, r.MsgID())
		}
		out = append(out, r)
	}
	return out
}

func open(t *testing.T, dir string, s *sink) *Meter {
	t.Helper()
	m, err := Open(dir, "n1", s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func totals(recs []usage.Record) map[string]Counter {
	out := map[string]Counter{}
	for _, r := range recs {
		for _, u := range r.Users {
			c := out[u.User]
			out[u.User] = Counter{Up: c.Up + u.Uplink, Down: c.Down + u.Downlink}
		}
	}
	return out
}

func TestDeltasAcrossRoundsAndRestarts(t *testing.T) {
	s := &sink{}
	m := open(t, t.TempDir(), s)
	rounds := [][]Reading{
		{{Instance: "x1", Counters: map[string]Counter{"a": {10, 100}, "b": {1, 1}}}},
		{{Instance: "x1", Counters: map[string]Counter{"a": {15, 150}, "b": {1, 1}}}},                                              // b idle
		{{Instance: "x1", Counters: nil}},                                                                                          // unreadable: keep
		{{Instance: "x1", Counters: map[string]Counter{"a": {20, 200}, "b": {1, 1}}}},                                              // counts since round 2
		{{Instance: "x2", Counters: map[string]Counter{"a": {3, 30}}}},                                                             // restart: from zero
		{{Instance: "x2", Counters: map[string]Counter{"a": {3, 30}}}},                                                             // no traffic: no record
		{{Instance: "x2", Counters: map[string]Counter{"a": {4, 40}}}, {Instance: "y", Counters: map[string]Counter{"a": {1, 1}}}}, // two servers
	}
	for _, r := range rounds {
		if _, err := m.Observe(r); err != nil {
			t.Fatal(err)
		}
	}
	recs := s.records(t)
	got := totals(recs)
	want := map[string]Counter{"a": {20 + 3 + 1 + 1, 200 + 30 + 10 + 1}, "b": {1, 1}}
	if got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("totals %v, want %v", got, want)
	}
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5 (idle and unreadable rounds record nothing)", len(recs))
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Window <= recs[i-1].Window {
			t.Fatalf("windows not increasing: %d then %d", recs[i-1].Window, recs[i].Window)
		}
	}
}

func TestWindowsGrowEvenWhenTheClockGoesBack(t *testing.T) {
	s := &sink{}
	m := open(t, t.TempDir(), s)
	clock := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return clock }
	n := int64(0)
	for range 3 {
		n += 10
		if _, err := m.Observe([]Reading{{Instance: "x", Counters: map[string]Counter{"a": {n, n}}}}); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(-time.Hour)
	}
	recs := s.records(t)
	if recs[0].Window != uint64(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC).UnixMilli()) ||
		recs[1].Window != recs[0].Window+1 || recs[2].Window != recs[1].Window+1 {
		t.Fatalf("windows %d %d %d", recs[0].Window, recs[1].Window, recs[2].Window)
	}
}

// TestCrashAfterSavingRequeuesTheSameRecord: the record was written to the
// state file but never reached the outbox (the sink failed, as if the
// process died there). Reopening queues exactly that record, with the same
// id, and the next round counts only what is new.
func TestCrashAfterSavingRequeuesTheSameRecord(t *testing.T) {
	dir := t.TempDir()
	broken := &sink{fail: true}
	m := open(t, dir, broken)
	if _, err := m.Observe([]Reading{{Instance: "x", Counters: map[string]Counter{"a": {5, 50}}}}); err == nil {
		t.Fatal("want the sink's error")
	}

	s := &sink{}
	m = open(t, dir, s)
	if len(s.msgs) != 1 {
		t.Fatalf("%d records re-queued on open, want 1", len(s.msgs))
	}
	if _, err := m.Observe([]Reading{{Instance: "x", Counters: map[string]Counter{"a": {7, 70}}}}); err != nil {
		t.Fatal(err)
	}
	if got := totals(s.records(t))["a"]; got != (Counter{7, 70}) {
		t.Fatalf("total %v, want {7 70}: nothing lost, nothing twice", got)
	}

	// A restart right after a successful round re-queues the same record
	// once more; its id makes it a duplicate downstream.
	s2 := &sink{}
	open(t, dir, s2)
	if len(s2.msgs) != 1 || s2.msgs[0].MsgID != s.msgs[len(s.msgs)-1].MsgID {
		t.Fatalf("re-queued %v, want the last record again", s2.msgs)
	}
}

func TestFailedQueueIsRetriedBeforeTheNextRound(t *testing.T) {
	s := &sink{}
	m := open(t, t.TempDir(), s)
	s.fail = true
	if _, err := m.Observe([]Reading{{Instance: "x", Counters: map[string]Counter{"a": {1, 1}}}}); err == nil {
		t.Fatal("want the sink's error")
	}
	s.fail = false
	if _, err := m.Observe([]Reading{{Instance: "x", Counters: map[string]Counter{"a": {1, 1}}}}); err != nil {
		t.Fatal(err)
	}
	if got := totals(s.records(t))["a"]; got != (Counter{1, 1}) {
		t.Fatalf("total %v, want {1 1}", got)
	}
}

func TestObserveOneKeepsTheOthers(t *testing.T) {
	s := &sink{}
	m := open(t, t.TempDir(), s)
	if _, err := m.Observe([]Reading{
		{Instance: "x", Counters: map[string]Counter{"a": {1, 1}}},
		{Instance: "y", Counters: map[string]Counter{"b": {2, 2}}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ObserveOne(Reading{Instance: "x", Counters: map[string]Counter{"a": {5, 5}}}); err != nil {
		t.Fatal(err)
	}
	// y was not read by ObserveOne: its next reading counts from {2 2}.
	if _, err := m.Observe([]Reading{{Instance: "y", Counters: map[string]Counter{"b": {3, 3}}}}); err != nil {
		t.Fatal(err)
	}
	got := totals(s.records(t))
	if got["a"] != (Counter{5, 5}) || got["b"] != (Counter{3, 3}) {
		t.Fatalf("totals %v", got)
	}
}
