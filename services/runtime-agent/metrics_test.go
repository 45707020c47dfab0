package agent_test

import (
	"fmt"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// gauge returns the value of the metric name whose labels include labels,
// on the current agent's registry.
func (f *fleet) gauge(name string, labels map[string]string) (float64, error) {
	f.mu.Lock()
	reg := f.metrics
	f.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				return m.GetGauge().GetValue(), nil
			}
		}
	}
	return 0, fmt.Errorf("no %s%v", name, labels)
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := labels[lp.GetName()]; ok && v == lp.GetValue() {
			n++
		}
	}
	return n == len(labels)
}

// TestAgentExportsItsMetrics: the agent's registry says what it runs once
// a server is applied: its workload running, the server applied, the users
// its Xray holds, the last usage window; and which build it is.
func TestAgentExportsItsMetrics(t *testing.T) {
	f := newFleet(t, "process")
	f.usage = 200 * time.Millisecond
	f.startAgent()
	srv := f.createServer("edge", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	u := f.createUser("bob")
	f.waitXrayHolds(srv, []string{u.ID}, "bob")
	// Traffic, so that a usage window is recorded.
	client := xraytest.StartClient(t, xraytest.Binary(t), outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
	connects(t, client, xraytest.StartHTTPTarget(t), "bob")

	for _, tt := range []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
	}{
		{"vpnfleet_agent_workloads", map[string]string{"state": "running"}, func(v float64) bool { return v == 1 }},
		{"vpnfleet_agent_workloads", map[string]string{"state": "exited"}, func(v float64) bool { return v == 0 }},
		{"vpnfleet_agent_servers", map[string]string{"state": "applied"}, func(v float64) bool { return v == 1 }},
		{"vpnfleet_agent_servers", map[string]string{"state": "failed"}, func(v float64) bool { return v == 0 }},
		{"vpnfleet_agent_server_users", map[string]string{"server": srv.ID}, func(v float64) bool { return v == 1 }},
		{"vpnfleet_agent_runtime_up", nil, func(v float64) bool { return v == 1 }},
		{"vpnfleet_agent_last_usage_window_timestamp_seconds", nil, func(v float64) bool {
			return v > float64(time.Now().Add(-time.Hour).Unix())
		}},
		{telemetry.BuildInfoName, nil, func(v float64) bool { return v == 1 }},
	} {
		t.Run(fmt.Sprintf("%s%v", tt.name, tt.labels), func(t *testing.T) {
			waitfor.Cond(t, applyWait, func() error {
				v, err := f.gauge(tt.name, tt.labels)
				if err != nil {
					return err
				}
				if !tt.want(v) {
					return fmt.Errorf("%s%v = %v", tt.name, tt.labels, v)
				}
				return nil
			})
		})
	}
}
