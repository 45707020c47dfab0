// Package alert evaluates alert rules over the fleet view: metric rules
// (a series compared with a threshold for a duration, resolved below a
// resolve threshold, with a cooldown) and event rules (a matching domain
// event fires, a matching resolve event or a timeout resolves). The rule
// set comes from a TOML file validated at start; Evaluator is the pure
// state machine and Store keeps firing alerts in the alerts bucket with
// compare-and-set, so replicas never fire one alert twice.
package alert

import (
	"embed"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// Defaults is the built-in rules file, used when no file is configured;
// deploy/prometheus/alerts.yml mirrors it for Prometheus.
//
//go:embed defaults.toml
var Defaults embed.FS

// DefaultsFile is the name of the built-in rules file in Defaults.
const DefaultsFile = "defaults.toml"

// Duration is a time.Duration written as "30s" or "5m" in the file.
type Duration time.Duration

// UnmarshalText parses a Go duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 30s, 5m)", b)
	}
	*d = Duration(v)
	return nil
}

// Rule is one [[rule]] table. Exactly one of Metric and Event is set.
type Rule struct {
	// Name is unique and a subject token; it names the alert.
	Name string `toml:"name"`
	// Metric names a series of the fleet view (see Metrics); the rule fires
	// per label set (node, workload, ...) whose value compares true with
	// Threshold for For.
	Metric    string   `toml:"metric"`
	Op        string   `toml:"op"`
	Threshold float64  `toml:"threshold"`
	For       Duration `toml:"for"`
	// ResolveThreshold, when set, resolves a firing alert only once the
	// value is on the other side of it (below it for > and >=): hysteresis.
	// Unset, the alert resolves when the condition is false.
	ResolveThreshold *float64 `toml:"resolve_threshold"`

	// Event names an event type (user.status_changed.v1); Match holds
	// payload fields (dotted paths) that must equal the given strings; Key
	// lists payload fields whose values become the alert's labels.
	Event string            `toml:"event"`
	Match map[string]string `toml:"match"`
	Key   []string          `toml:"key"`
	// ResolveEvent and ResolveMatch resolve the alert with the same key;
	// ResolveAfter resolves it after that long regardless (default 1h).
	ResolveEvent string            `toml:"resolve_event"`
	ResolveMatch map[string]string `toml:"resolve_match"`
	ResolveAfter Duration          `toml:"resolve_after"`

	Severity string `toml:"severity"`
	// Summary is a one-line text; {{label}} is replaced by the label's
	// value and {{value}} by the value.
	Summary string `toml:"summary"`
	// Labels are added to every alert of the rule (team, page, ...).
	Labels map[string]string `toml:"labels"`
	// Cooldown keeps a resolved alert from firing again for that long.
	Cooldown Duration `toml:"cooldown"`
}

// Metrics lists the series metric rules can name, with their labels.
var Metrics = map[string][]string{
	"node_down":                  {"node"},
	"node_degraded":              {"node"},
	"node_heartbeat_age_seconds": {"node"},
	"node_cpu_percent":           {"node"},
	"node_memory_percent":        {"node"},
	"node_disk_percent":          {"node"},
	"workload_down":              {"node", "workload"},
	"workload_exits":             {"node", "workload"},
	"consumer_pending":           {"stream", "consumer"},
	"server_users_behind":        {"node", "server"},
}

var ops = []string{">", ">=", "<", "<=", "==", "!="}

var severities = []string{event.SeverityCritical, event.SeverityWarning, event.SeverityInfo}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	eventRE = regexp.MustCompile(`^[a-z_]+\.[a-z_]+\.v[0-9]+$`)
)

// DefaultResolveAfter resolves event alerts without a resolve event.
const DefaultResolveAfter = time.Hour

// Validate checks every rule and returns one Invalid error naming each bad
// field as rule[<i>] "<name>".<field>, and fills defaults.
func Validate(rules []Rule) error {
	var fe []errs.FieldError
	seen := map[string]bool{}
	for i := range rules {
		r := &rules[i]
		bad := func(field, rule string) {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("rule[%d] %q.%s", i, r.Name, field), Rule: rule})
		}
		switch {
		case !nameRE.MatchString(r.Name):
			bad("name", "must be 1-64 of A-Z a-z 0-9 _ -")
		case seen[r.Name]:
			bad("name", "is used by another rule")
		}
		seen[r.Name] = true
		if !slices.Contains(severities, r.Severity) {
			bad("severity", "must be critical, warning or info")
		}
		if r.Cooldown < 0 {
			bad("cooldown", "must not be negative")
		}
		switch {
		case r.Metric != "" && r.Event != "":
			bad("metric", "a rule has a metric or an event, not both")
		case r.Metric != "":
			if _, ok := Metrics[r.Metric]; !ok {
				bad("metric", "must be one of "+strings.Join(sortedKeys(Metrics), ", "))
			}
			if !slices.Contains(ops, r.Op) {
				bad("op", "must be one of "+strings.Join(ops, " "))
			}
			if math.IsNaN(r.Threshold) || math.IsInf(r.Threshold, 0) {
				bad("threshold", "must be a finite number")
			}
			if r.For < 0 {
				bad("for", "must not be negative")
			}
			if rt := r.ResolveThreshold; rt != nil {
				switch {
				case (r.Op == ">" || r.Op == ">=") && *rt > r.Threshold,
					(r.Op == "<" || r.Op == "<=") && *rt < r.Threshold:
					bad("resolve_threshold", fmt.Sprintf("must be on the resolved side of threshold %g (op %s)", r.Threshold, r.Op))
				case r.Op == "==" || r.Op == "!=":
					bad("resolve_threshold", "only applies to <, <=, > and >=")
				}
			}
			if r.Event != "" || len(r.Match) > 0 || len(r.Key) > 0 || r.ResolveEvent != "" || r.ResolveAfter != 0 {
				bad("event", "event fields (match, key, resolve_event, resolve_after) need an event rule")
			}
		case r.Event != "":
			if !eventRE.MatchString(r.Event) {
				bad("event", "must be an event type like user.status_changed.v1")
			}
			if r.ResolveEvent != "" && !eventRE.MatchString(r.ResolveEvent) {
				bad("resolve_event", "must be an event type like user.status_changed.v1")
			}
			if len(r.Key) == 0 {
				bad("key", "must name at least one payload field (e.g. [\"user.id\"])")
			}
			if r.ResolveAfter < 0 {
				bad("resolve_after", "must not be negative")
			}
			if r.ResolveAfter == 0 {
				r.ResolveAfter = Duration(DefaultResolveAfter)
			}
			if r.Op != "" || r.For != 0 || r.ResolveThreshold != nil {
				bad("op", "op, threshold, for and resolve_threshold need a metric rule")
			}
		default:
			bad("metric", "a rule needs a metric or an event")
		}
	}
	if len(fe) == 0 {
		return nil
	}
	return &errs.Error{Class: errs.Invalid, Msg: "invalid alert rules", Fields: fe}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// holds reports whether v compares true with the rule's threshold.
func (r *Rule) holds(v float64) bool {
	return compare(r.Op, v, r.Threshold)
}

// resolved reports whether a firing alert with value v resolves.
func (r *Rule) resolved(v float64) bool {
	if r.ResolveThreshold == nil {
		return !r.holds(v)
	}
	rt := *r.ResolveThreshold
	switch r.Op {
	case ">", ">=":
		return v < rt
	default:
		return v > rt
	}
}

func compare(op string, a, b float64) bool {
	switch op {
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	case "==":
		return a == b
	case "!=":
		return a != b
	}
	return false
}
