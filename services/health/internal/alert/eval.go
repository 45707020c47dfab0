package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/event"
)

// Sample is one value of a series of the fleet view at evaluation time.
type Sample struct {
	Metric string
	Labels map[string]string
	Value  float64
}

// Fingerprint identifies one alert: the rule and its label set, stable
// across evaluations, replicas and restarts, and a valid subject token.
func Fingerprint(rule string, labels map[string]string) string {
	h := sha256.New()
	h.Write([]byte(rule))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		h.Write([]byte{0})
		h.Write([]byte(k + "=" + labels[k]))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Evaluator decides when alerts fire and resolve. It holds pending
// conditions (waiting out a rule's for), the firing alerts and recent
// resolutions (for cooldowns); it does no I/O, so the rules are tested
// without NATS. Its methods return the alerts whose status changed; the
// caller stores and publishes them. Not safe for concurrent use.
type Evaluator struct {
	rules    []Rule
	pending  map[string]time.Time
	firing   map[string]event.Alert
	resolved map[string]time.Time
}

// NewEvaluator returns an evaluator of validated rules.
func NewEvaluator(rules []Rule) *Evaluator {
	return &Evaluator{
		rules:    rules,
		pending:  map[string]time.Time{},
		firing:   map[string]event.Alert{},
		resolved: map[string]time.Time{},
	}
}

// Rules returns the rule set.
func (e *Evaluator) Rules() []Rule { return e.rules }

// Adopt makes a stored alert known to the evaluator: a firing one will be
// resolved when its condition clears, a resolved one starts its cooldown.
// A new evaluator adopts every stored alert before its first evaluation.
func (e *Evaluator) Adopt(a event.Alert) {
	if a.Status == event.AlertFiringStatus {
		e.firing[a.Fingerprint] = a
		return
	}
	delete(e.firing, a.Fingerprint)
	e.resolved[a.Fingerprint] = a.EndsAt
}

// Firing returns the alerts currently firing.
func (e *Evaluator) Firing() []event.Alert {
	return slices.Collect(maps.Values(e.firing))
}

// Eval evaluates every metric rule against samples, and the resolve
// timeouts of event rules, at now.
func (e *Evaluator) Eval(now time.Time, samples []Sample) []event.Alert {
	byMetric := map[string][]Sample{}
	for _, s := range samples {
		byMetric[s.Metric] = append(byMetric[s.Metric], s)
	}
	var out []event.Alert
	seen := map[string]bool{}
	for i := range e.rules {
		r := &e.rules[i]
		if r.Metric == "" {
			continue
		}
		for _, s := range byMetric[r.Metric] {
			labels := mergeLabels(s.Labels, r.Labels)
			fp := Fingerprint(r.Name, labels)
			seen[fp] = true
			if a, ok := e.firing[fp]; ok {
				if r.resolved(s.Value) {
					out = append(out, e.resolve(now, a, s.Value))
				}
				continue
			}
			if !r.holds(s.Value) {
				delete(e.pending, fp)
				continue
			}
			if e.cooling(now, r, fp) {
				continue
			}
			since, ok := e.pending[fp]
			if !ok {
				since = now
				e.pending[fp] = since
			}
			if now.Sub(since) >= time.Duration(r.For) {
				delete(e.pending, fp)
				out = append(out, e.fire(now, r, fp, labels, s.Value))
			}
		}
	}
	for fp := range e.pending {
		if !seen[fp] {
			delete(e.pending, fp)
		}
	}
	for fp, a := range e.firing {
		r := e.rule(a.Rule)
		switch {
		case r == nil:
			// The rule was removed from the file: the alert can never
			// resolve by its condition, so it resolves now.
			out = append(out, e.resolve(now, a, a.Value))
		case r.Metric != "" && !seen[fp]:
			// The series is gone (node or workload removed).
			out = append(out, e.resolve(now, a, a.Value))
		case r.Event != "" && now.Sub(a.StartsAt) >= time.Duration(r.ResolveAfter):
			out = append(out, e.resolve(now, a, a.Value))
		}
	}
	return out
}

// Event evaluates the event rules against one domain event.
func (e *Evaluator) Event(now time.Time, typ event.Type, data json.RawMessage) []event.Alert {
	var fields map[string]string
	var out []event.Alert
	for i := range e.rules {
		r := &e.rules[i]
		if r.Event == "" || (r.Event != string(typ) && r.ResolveEvent != string(typ)) {
			continue
		}
		if fields == nil {
			fields = Flatten(data)
		}
		labels, ok := keyLabels(r, fields)
		if !ok {
			continue
		}
		labels = mergeLabels(labels, r.Labels)
		fp := Fingerprint(r.Name, labels)
		a, isFiring := e.firing[fp]
		if r.ResolveEvent == string(typ) && matches(r.ResolveMatch, fields) && isFiring {
			out = append(out, e.resolve(now, a, 0))
			continue
		}
		if r.Event == string(typ) && matches(r.Match, fields) && !isFiring && !e.cooling(now, r, fp) {
			out = append(out, e.fire(now, r, fp, labels, 1))
		}
	}
	return out
}

func (e *Evaluator) rule(name string) *Rule {
	for i := range e.rules {
		if e.rules[i].Name == name {
			return &e.rules[i]
		}
	}
	return nil
}

func (e *Evaluator) cooling(now time.Time, r *Rule, fp string) bool {
	at, ok := e.resolved[fp]
	return ok && now.Sub(at) < time.Duration(r.Cooldown)
}

func (e *Evaluator) fire(now time.Time, r *Rule, fp string, labels map[string]string, v float64) event.Alert {
	a := event.Alert{
		Fingerprint: fp, Rule: r.Name, Status: event.AlertFiringStatus, Severity: r.Severity,
		Summary: render(r.Summary, labels, v), Labels: labels, Value: v, Threshold: r.Threshold,
		StartsAt: now, UpdatedAt: now,
	}
	e.firing[fp] = a
	delete(e.resolved, fp)
	return a
}

func (e *Evaluator) resolve(now time.Time, a event.Alert, v float64) event.Alert {
	delete(e.firing, a.Fingerprint)
	e.resolved[a.Fingerprint] = now
	a.Status = event.AlertResolvedStatus
	a.EndsAt = now
	a.UpdatedAt = now
	a.Value = v
	a.Published = false
	return a
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := make(map[string]string, len(a)+len(b))
	maps.Copy(out, a)
	maps.Copy(out, b)
	return out
}

func keyLabels(r *Rule, fields map[string]string) (map[string]string, bool) {
	labels := make(map[string]string, len(r.Key))
	for _, k := range r.Key {
		v, ok := fields[k]
		if !ok || v == "" {
			return nil, false
		}
		labels[strings.ReplaceAll(k, ".", "_")] = v
	}
	return labels, true
}

func matches(want, fields map[string]string) bool {
	for k, v := range want {
		if fields[k] != v {
			return false
		}
	}
	return true
}

// Flatten turns a JSON object into dotted paths of its scalar leaves
// ({"user":{"status":"limited"}} → "user.status" = "limited"), so rules
// can match payload fields without knowing the payload's Go type.
func Flatten(data json.RawMessage) map[string]string {
	var v any
	out := map[string]string{}
	if err := json.Unmarshal(data, &v); err != nil {
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, c := range t {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, c)
			}
		case []any:
			// Lists do not key alerts; skip them.
		case string:
			out[prefix] = t
		case float64:
			out[prefix] = strconv.FormatFloat(t, 'f', -1, 64)
		case bool:
			out[prefix] = strconv.FormatBool(t)
		}
	}
	walk("", v)
	return out
}

// render fills {{label}} and {{value}} in a summary.
func render(tmpl string, labels map[string]string, v float64) string {
	if tmpl == "" {
		return ""
	}
	pairs := []string{"{{value}}", strconv.FormatFloat(v, 'f', -1, 64)}
	for k, val := range labels {
		pairs = append(pairs, fmt.Sprintf("{{%s}}", k), val)
	}
	return strings.NewReplacer(pairs...).Replace(tmpl)
}
