package alert_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func ptr(v float64) *float64 { return &v }

func cpu(v float64) []alert.Sample {
	return []alert.Sample{{Metric: "node_cpu_percent", Labels: map[string]string{"node": "n1"}, Value: v}}
}

func rules(t *testing.T, rs ...alert.Rule) *alert.Evaluator {
	t.Helper()
	if err := alert.Validate(rs); err != nil {
		t.Fatal(err)
	}
	return alert.NewEvaluator(rs)
}

// TestMetricRuleForResolveAndCooldown walks one CPU rule through pending,
// firing, hysteresis, resolution and cooldown.
func TestMetricRuleForResolveAndCooldown(t *testing.T) {
	e := rules(t, alert.Rule{Name: "HostCPUHigh", Metric: "node_cpu_percent", Op: ">", Threshold: 90,
		ResolveThreshold: ptr(80), For: alert.Duration(5 * time.Minute), Cooldown: alert.Duration(10 * time.Minute),
		Severity: "warning", Summary: "cpu {{node}} {{value}}"})
	steps := []struct {
		at     time.Duration
		value  float64
		status string // transition expected at this step, "" for none
	}{
		{0, 95, ""},
		{4 * time.Minute, 96, ""},
		{5 * time.Minute, 97, event.AlertFiringStatus},
		{6 * time.Minute, 85, ""}, // below threshold, above the resolve threshold
		{7 * time.Minute, 79, event.AlertResolvedStatus},
		{8 * time.Minute, 99, ""},  // cooling down
		{16 * time.Minute, 99, ""}, // still cooling (resolved at 7m)
		{18 * time.Minute, 99, ""}, // cooldown over: pending again
		{23 * time.Minute, 99, event.AlertFiringStatus},
	}
	for _, s := range steps {
		got := e.Eval(t0.Add(s.at), cpu(s.value))
		switch {
		case s.status == "" && len(got) != 0:
			t.Fatalf("at %v value %v: unexpected %+v", s.at, s.value, got)
		case s.status != "" && (len(got) != 1 || got[0].Status != s.status):
			t.Fatalf("at %v value %v: got %+v, want one %s", s.at, s.value, got, s.status)
		case s.status == event.AlertFiringStatus:
			if got[0].Summary != "cpu n1 "+formatted(s.value) || got[0].Labels["node"] != "n1" {
				t.Fatalf("fired %+v", got[0])
			}
		}
	}
}

func formatted(v float64) string { b, _ := json.Marshal(v); return string(b) }

func TestMetricRuleDroppingBelowThresholdResetsFor(t *testing.T) {
	e := rules(t, alert.Rule{Name: "X", Metric: "node_cpu_percent", Op: ">", Threshold: 90, For: alert.Duration(time.Minute), Severity: "info"})
	e.Eval(t0, cpu(95))
	e.Eval(t0.Add(30*time.Second), cpu(50))
	if got := e.Eval(t0.Add(61*time.Second), cpu(95)); len(got) != 0 {
		t.Fatalf("fired although the condition was interrupted: %+v", got)
	}
}

func TestVanishedSeriesResolves(t *testing.T) {
	e := rules(t, alert.Rule{Name: "ServerDown", Metric: "workload_down", Op: ">", Threshold: 0, Severity: "critical"})
	s := []alert.Sample{{Metric: "workload_down", Labels: map[string]string{"node": "n1", "workload": "w"}, Value: 1}}
	if got := e.Eval(t0, s); len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	got := e.Eval(t0.Add(time.Second), nil)
	if len(got) != 1 || got[0].Status != event.AlertResolvedStatus {
		t.Fatalf("series gone: %+v, want resolved", got)
	}
}

func TestFingerprintIsStable(t *testing.T) {
	a := alert.Fingerprint("R", map[string]string{"node": "n1", "workload": "w"})
	b := alert.Fingerprint("R", map[string]string{"workload": "w", "node": "n1"})
	c := alert.Fingerprint("R", map[string]string{"node": "n2", "workload": "w"})
	if a != b || a == c || len(a) != 32 {
		t.Fatalf("fingerprints %s %s %s", a, b, c)
	}
}

func TestEventRule(t *testing.T) {
	e := rules(t, alert.Rule{Name: "UserTrafficLimit", Event: "user.status_changed.v1",
		Match: map[string]string{"user.status": "limited"}, Key: []string{"user.id"},
		ResolveEvent: "user.status_changed.v1", ResolveMatch: map[string]string{"previous_status": "limited"},
		Severity: "info", Summary: "{{user_id}} limited"})
	limited := json.RawMessage(`{"user":{"id":"u1","status":"limited"},"previous_status":"active"}`)
	other := json.RawMessage(`{"user":{"id":"u1","status":"disabled"},"previous_status":"active"}`)
	back := json.RawMessage(`{"user":{"id":"u1","status":"active"},"previous_status":"limited"}`)
	if got := e.Event(t0, "user.status_changed.v1", other); len(got) != 0 {
		t.Fatalf("non-matching event fired: %+v", got)
	}
	got := e.Event(t0, "user.status_changed.v1", limited)
	if len(got) != 1 || got[0].Status != event.AlertFiringStatus || got[0].Summary != "u1 limited" {
		t.Fatalf("got %+v", got)
	}
	if again := e.Event(t0, "user.status_changed.v1", limited); len(again) != 0 {
		t.Fatalf("a firing alert fired again: %+v", again)
	}
	got = e.Event(t0.Add(time.Minute), "user.status_changed.v1", back)
	if len(got) != 1 || got[0].Status != event.AlertResolvedStatus {
		t.Fatalf("resolve event: %+v", got)
	}
	// Without a resolve event, resolve_after (default 1h) resolves it.
	e.Event(t0.Add(2*time.Minute), "user.status_changed.v1", limited)
	if got := e.Eval(t0.Add(2*time.Minute+time.Hour), nil); len(got) != 1 || got[0].Status != event.AlertResolvedStatus {
		t.Fatalf("resolve after: %+v", got)
	}
}

func TestAdoptedFiringAlertResolves(t *testing.T) {
	e := rules(t, alert.Rule{Name: "X", Metric: "node_cpu_percent", Op: ">", Threshold: 90, Severity: "info"})
	fp := alert.Fingerprint("X", map[string]string{"node": "n1"})
	e.Adopt(event.Alert{Fingerprint: fp, Rule: "X", Status: event.AlertFiringStatus, Seq: 4, Labels: map[string]string{"node": "n1"}})
	got := e.Eval(t0, cpu(10))
	if len(got) != 1 || got[0].Status != event.AlertResolvedStatus || got[0].Seq != 4 {
		t.Fatalf("got %+v, want the adopted alert resolved with its seq", got)
	}
}
