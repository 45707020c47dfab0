package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// The agent's own metrics, read when scraped: what runs on the node and
// whether its servers are applied, so a node's /metrics answers "does it
// serve?" without the fleet view of the health service.
var (
	workloadsDesc = prometheus.NewDesc("vpnfleet_agent_workloads",
		"Workloads on this node's runtime by state.", []string{"state"}, nil)
	serversDesc = prometheus.NewDesc("vpnfleet_agent_servers",
		"Servers desired on this node by the outcome last reported (applied, partial, failed; pending before the first).", []string{"state"}, nil)
	serverUsersDesc = prometheus.NewDesc("vpnfleet_agent_server_users",
		"Users the server's Xray holds, as applied by the agent.", []string{"server"}, nil)
	usageWindowDesc = prometheus.NewDesc("vpnfleet_agent_last_usage_window_timestamp_seconds",
		"Time of the last usage window recorded (its end, Unix seconds); 0 before the first.", nil, nil)
	runtimeUpDesc = prometheus.NewDesc("vpnfleet_agent_runtime_up",
		"1 when the runtime listed its workloads for this scrape, 0 when it could not (vpnfleet_agent_workloads are then 0).", nil, nil)
)

// workloadStates are reported even at zero, so a rule sees the series.
var workloadStates = []runtime.State{runtime.StateCreated, runtime.StateRunning, runtime.StateRestarting, runtime.StateExited, runtime.StateUnknown}

// serverStates are the values of vpnfleet_agent_servers' state label.
var serverStates = []string{string(server.StateApplied), string(server.StatePartial), string(server.StateFailed), "pending"}

// collector serves the agent's metrics on its registry.
type collector struct{ a *Agent }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workloadsDesc, serversDesc, serverUsersDesc, usageWindowDesc, runtimeUpDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	// A scrape has no context of its own; a runtime that hangs must not
	// hold it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	up := 0.0
	byState := map[runtime.State]int{}
	if ws, err := c.a.rt.List(ctx); err == nil {
		up = 1
		for _, w := range ws {
			byState[w.State]++
		}
	}
	ch <- prometheus.MustNewConstMetric(runtimeUpDesc, prometheus.GaugeValue, up)
	for _, st := range workloadStates {
		ch <- prometheus.MustNewConstMetric(workloadsDesc, prometheus.GaugeValue, float64(byState[st]), string(st))
	}

	servers := map[string]int{}
	for _, s := range c.a.rec.Stats() {
		st := string(s.State)
		if st == "" {
			st = "pending"
		}
		servers[st]++
		ch <- prometheus.MustNewConstMetric(serverUsersDesc, prometheus.GaugeValue, float64(s.Users), s.ServerID)
	}
	for _, st := range serverStates {
		ch <- prometheus.MustNewConstMetric(serversDesc, prometheus.GaugeValue, float64(servers[st]), st)
	}

	ch <- prometheus.MustNewConstMetric(usageWindowDesc, prometheus.GaugeValue, float64(c.a.usage.lastWindow())/1000)
}
