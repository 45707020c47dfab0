package health_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestBuiltInRulesAreValid(t *testing.T) {
	f, err := health.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"NodeDown", "ServerDown", "ServerRestarting", "ServerUsersBehind", "HostCPUHigh", "HostMemoryHigh", "HostDiskHigh", "ConsumerLag", "UserTrafficLimit", "JobFailed"}
	var got []string
	for _, r := range f.Rules {
		got = append(got, r.Name)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("built-in rules %v, want %v", got, want)
	}
}

// TestInvalidRulesFileNamesRuleAndField: every mistake names the rule (or
// notifier) and the field, and the service refuses to start.
func TestInvalidRulesFileNamesRuleAndField(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string
	}{
		{"unknown metric", `[[rule]]
name = "A"
metric = "cpu"
op = ">"
severity = "warning"`, []string{`rule[0] "A".metric`}},
		{"bad op and severity", `[[rule]]
name = "B"
metric = "node_cpu_percent"
op = "=>"
severity = "loud"`, []string{`rule[0] "B".op`, `rule[0] "B".severity`}},
		{"resolve threshold on the wrong side", `[[rule]]
name = "C"
metric = "node_cpu_percent"
op = ">"
threshold = 90
resolve_threshold = 95
severity = "warning"`, []string{`rule[0] "C".resolve_threshold`}},
		{"duplicate names", `[[rule]]
name = "D"
metric = "node_down"
op = ">"
severity = "critical"
[[rule]]
name = "D"
metric = "node_down"
op = ">"
severity = "critical"`, []string{`rule[1] "D".name`}},
		{"bad duration", `[[rule]]
name = "E"
metric = "node_down"
op = ">"
for = "five minutes"
severity = "critical"`, []string{"five minutes", "duration"}},
		{"unknown key", `[[rule]]
name = "F"
metric = "node_down"
op = ">"
treshold = 1
severity = "critical"`, []string{`rule[0] "F".treshold`}},
		{"event rule without key", `[[rule]]
name = "G"
event = "job.finished.v1"
severity = "warning"`, []string{`rule[0] "G".key`}},
		{"metric and event", `[[rule]]
name = "H"
metric = "node_down"
event = "job.finished.v1"
op = ">"
severity = "warning"`, []string{`rule[0] "H".metric`}},
		{"bad notifier", `[[rule]]
name = "I"
metric = "node_down"
op = ">"
severity = "critical"
[[notifier]]
name = "tg"
kind = "telegram"
url = "ftp://example"`, []string{`notifier[0] "tg".url`, `notifier[0] "tg".chat_id`}},
		{"not toml", `[[rule]`, []string{"line 1"}},
		{"no rules", `# nothing`, []string{"no [[rule]]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "rules.toml")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := health.LoadRules(path)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// Run refuses to start before touching NATS.
			cfg := health.Defaults()
			cfg.RulesFile = path
			if err := health.Run(t.Context(), cfg, svcEnvNone()); !errors.Is(err, errs.Invalid) {
				t.Fatalf("Run: err %v, want Invalid", err)
			}
		})
	}
	if _, err := health.LoadRules(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, errs.Invalid) {
		t.Fatalf("missing file: err %v, want Invalid", err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := health.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.LagAfter = c.DownAfter
	c.DegradedCPU = 120
	c.HistoryCoarse = 90 * c.HistoryStep / 60
	err := c.Validate()
	for _, f := range []string{"node_lag_after", "degraded_cpu", "history_coarse_step"} {
		found := false
		for _, fe := range errs.FieldsOf(err) {
			found = found || fe.Field == f
		}
		if !found {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
}

// TestBuiltInEventRulesMatchRealPayloads feeds the built-in event rules the
// payloads their publishers send.
func TestBuiltInEventRulesMatchRealPayloads(t *testing.T) {
	f, err := health.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	e := alert.NewEvaluator(f.Rules)
	now := time.Now()
	failed, _ := json.Marshal(job.Event{Job: job.Job{ID: "j1", State: job.StateFailed}})
	done, _ := json.Marshal(job.Event{Job: job.Job{ID: "j2", State: job.StateCompleted}})
	limited, _ := json.Marshal(user.Event{User: user.User{ID: "u1", Name: "ann", Status: user.StatusLimited}, PreviousStatus: user.StatusActive})
	if got := e.Event(now, event.JobFinished, done); len(got) != 0 {
		t.Fatalf("completed job fired %+v", got)
	}
	got := e.Event(now, event.JobFinished, failed)
	if len(got) != 1 || got[0].Rule != "JobFailed" || got[0].Summary != "job j1 failed" {
		t.Fatalf("failed job: %+v", got)
	}
	got = e.Event(now, event.UserStatusChanged, limited)
	if len(got) != 1 || got[0].Rule != "UserTrafficLimit" || got[0].Labels["user_name"] != "ann" {
		t.Fatalf("limited user: %+v", got)
	}
}
