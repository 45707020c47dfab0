package metrics_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/services/health/internal/metrics"
	"github.com/vpnfleet/vpnfleet/services/health/internal/nodehealth"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// exported gathers every metric name the collector serves with a
// populated fleet view and per-user series on.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := metrics.Register(reg, true, func() metrics.Snapshot {
		return metrics.Snapshot{
			Active: true,
			Nodes: []nodehealth.NodeView{{ID: "n1", State: event.HealthHealthy, HeartbeatAge: time.Second, CPUPercent: 5,
				MemUsed: 1, MemTot: 2, DiskUsed: 1, DiskTo: 2, HostFresh: true,
				Workloads: []nodehealth.WorkloadView{{Name: "w", State: event.WorkloadRunning, CPUPercent: 1, MemoryBytes: 1, StatsFresh: true}}}},
			Users:     map[string]int{"active": 1, "limited": 1},
			Online:    1,
			Consumers: []metrics.Consumer{{Stream: "USAGE", Name: "users-usage", Pending: 1}},
			Firing:    []event.Alert{{Rule: "JobFailed", Severity: "warning"}},
			Servers:   []metrics.ServerUsers{{Node: "n1", Server: "s1", Desired: 2, Applied: 1, Behind: 1}},
		}
	})
	c.Traffic.WithLabelValues("n1", "uplink").Add(1)
	c.UserTraffic.WithLabelValues("u1", "uplink").Add(1)
	c.Ingested.WithLabelValues("STATS", "ok").Inc()
	c.Notifications.WithLabelValues("ops", "ok").Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
	}
	return out
}

var metricName = regexp.MustCompile(`\bvpnfleet_[a-z_]+`)

// exprs collects every string under a key named "expr" in a decoded JSON
// or YAML document.
func exprs(v any, out *[]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if s, ok := c.(string); ok && k == "expr" {
				*out = append(*out, s)
				continue
			}
			exprs(c, out)
		}
	case []any:
		for _, c := range t {
			exprs(c, out)
		}
	}
}

// TestDeployReferencesOnlyExportedMetrics parses the Grafana dashboard and
// the Prometheus rules in deploy/ and checks that every vpnfleet_* metric
// they use is served by the collector.
func TestDeployReferencesOnlyExportedMetrics(t *testing.T) {
	have := exported(t)
	root := filepath.Join("..", "..", "..", "..", "deploy")
	files := []struct {
		path   string
		decode func([]byte, any) error
		min    int
	}{
		{filepath.Join(root, "grafana", "vpnfleet-dashboard.json"), json.Unmarshal, 15},
		{filepath.Join(root, "prometheus", "alerts.yml"), yaml.Unmarshal, 9},
	}
	for _, f := range files {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			data, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			var doc any
			if err := f.decode(data, &doc); err != nil {
				t.Fatalf("parsing %s: %v", f.path, err)
			}
			var es []string
			exprs(doc, &es)
			if len(es) < f.min {
				t.Fatalf("%d expressions in %s, want at least %d", len(es), f.path, f.min)
			}
			for _, e := range es {
				names := metricName.FindAllString(e, -1)
				if len(names) == 0 {
					t.Errorf("expression %q uses no vpnfleet metric", e)
				}
				for _, n := range names {
					if !have[n] {
						t.Errorf("%s uses %s, which health does not export", f.path, n)
					}
				}
			}
		})
	}
}

// TestPrometheusRulesMatchBuiltIns: the Prometheus file carries one rule
// per built-in rule, with the same severity.
func TestPrometheusRulesMatchBuiltIns(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert  string            `yaml:"alert"`
				Labels map[string]string `yaml:"labels"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	prom := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			prom[r.Alert] = r.Labels["severity"]
		}
	}
	builtIn, err := health.LoadRules("")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range builtIn.Rules {
		if prom[r.Name] != r.Severity {
			t.Errorf("prometheus rule %s has severity %q, want %q as built in", r.Name, prom[r.Name], r.Severity)
		}
	}
	if len(prom) != len(builtIn.Rules) {
		t.Errorf("%d prometheus rules, %d built in", len(prom), len(builtIn.Rules))
	}
}
