package nodehealth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health/internal/nodehealth"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/node"
)

var cfg = nodehealth.Config{
	DownAfter: 30 * time.Second, LagAfter: 15 * time.Second,
	CPU: 90, Memory: 90, Disk: 90, RestartWindow: 10 * time.Minute, Restarts: 3,
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func reg(at time.Time, state string) node.Node {
	return node.Node{ID: "n1", State: state, HeartbeatAt: at, HeartbeatEvery: 5 * time.Second}
}

func host(at time.Time, cpu float64, memUsed uint64) node.HostStats {
	return node.HostStats{Node: "n1", Time: at, CPUPercent: cpu, MemTotalBytes: 100, MemUsedBytes: memUsed, DiskTotal: 100, DiskUsed: 10}
}

// judge applies steps to a fresh fleet and returns the judgement of n1 at
// the end.
func TestJudge(t *testing.T) {
	tests := []struct {
		name       string
		steps      func(f *nodehealth.Fleet)
		at         time.Time
		want       string
		wantReason string
	}{
		{"fresh heartbeat is healthy", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Host(host(t0, 10, 10), t0)
		}, t0.Add(time.Second), event.HealthHealthy, ""},
		{"heartbeat beyond the grace is down", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
		}, t0.Add(31 * time.Second), event.HealthDown, "no heartbeat"},
		{"heartbeat within the grace is not down", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
		}, t0.Add(29 * time.Second), event.HealthDegraded, "agent lagging"},
		{"a cleanly stopped agent (a restart, most often) is degraded: its servers keep serving", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateStopped))
		}, t0.Add(29 * time.Second), event.HealthDegraded, "agent stopped; its servers keep serving"},
		{"an agent stopped beyond the grace is down", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateStopped))
		}, t0.Add(31 * time.Second), event.HealthDown, "agent stopped 31s ago"},
		{"stats far behind: agent lagging", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Host(host(t0.Add(-time.Minute), 10, 10), t0)
		}, t0, event.HealthDegraded, "stats more than"},
		{"high cpu degrades", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Host(host(t0, 95, 10), t0)
		}, t0, event.HealthDegraded, "cpu above 90%"},
		{"high memory degrades", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Host(host(t0, 5, 95), t0)
		}, t0, event.HealthDegraded, "memory above 90%"},
		{"a dead server degrades", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Workload: "id1", Name: "srv", Kind: "start", Time: t0})
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Workload: "id1", Name: "srv", Kind: "die", ExitCode: 2, Time: t0.Add(time.Second)})
		}, t0.Add(time.Second), event.HealthDegraded, "server srv down: exited with code 2"},
		{"a restarted server is healthy again", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: t0})
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "start", Time: t0.Add(time.Second)})
		}, t0.Add(time.Second), event.HealthHealthy, ""},
		{"a late replayed die does not undo a later start", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "start", Time: t0.Add(time.Second)})
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: t0})
		}, t0.Add(time.Second), event.HealthHealthy, ""},
		{"stats newer than a die prove the server runs", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0, node.StateRunning))
			f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: t0})
			f.Workload("srv", node.WorkloadStats{Node: "n1", Name: "srv", Time: t0.Add(time.Second)}, t0.Add(time.Second))
		}, t0.Add(time.Second), event.HealthHealthy, ""},
		{"repeated exits: restarting", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0.Add(3*time.Second), node.StateRunning))
			for i := range 3 {
				at := t0.Add(time.Duration(i) * time.Second)
				f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: at})
				f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "start", Time: at.Add(time.Millisecond)})
			}
		}, t0.Add(3 * time.Second), event.HealthDegraded, "srv restarting repeatedly"},
		{"exits outside the window are forgotten", func(f *nodehealth.Fleet) {
			f.Registration(reg(t0.Add(11*time.Minute), node.StateRunning))
			for i := range 3 {
				at := t0.Add(time.Duration(i) * time.Second)
				f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: at})
				f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "start", Time: at.Add(time.Millisecond)})
			}
		}, t0.Add(11 * time.Minute), event.HealthHealthy, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := nodehealth.New(cfg)
			tt.steps(f)
			ch := f.Judge(tt.at)
			if len(ch) != 1 {
				t.Fatalf("%d changes, want 1", len(ch))
			}
			h := ch[0].Health
			if h.State != tt.want || !strings.Contains(h.Reason, tt.wantReason) {
				t.Fatalf("state %s (%q), want %s containing %q", h.State, h.Reason, tt.want, tt.wantReason)
			}
			if ch[0].Transition == nil || ch[0].Transition.To != tt.want || !h.Since.Equal(tt.at) {
				t.Fatalf("first judgement must be a transition at %v: %+v", tt.at, ch[0])
			}
		})
	}
}

// TestTransitionsOnlyOnChange: an unchanged judgement writes nothing; a
// new reason updates the record without a transition; Since stays.
func TestTransitionsOnlyOnChange(t *testing.T) {
	f := nodehealth.New(cfg)
	f.Registration(reg(t0, node.StateRunning))
	f.Host(host(t0, 95, 10), t0)
	if ch := f.Judge(t0); len(ch) != 1 || ch[0].Transition == nil {
		t.Fatalf("first judge: %+v", ch)
	}
	f.Registration(reg(t0.Add(5*time.Second), node.StateRunning))
	f.Host(host(t0.Add(5*time.Second), 97, 10), t0.Add(5*time.Second))
	if ch := f.Judge(t0.Add(5 * time.Second)); len(ch) != 0 {
		t.Fatalf("same causes, new values: %+v, want no change", ch)
	}
	f.Host(host(t0.Add(6*time.Second), 97, 95), t0.Add(6*time.Second))
	ch := f.Judge(t0.Add(6 * time.Second))
	if len(ch) != 1 || ch[0].Transition != nil || !ch[0].Health.Since.Equal(t0) || len(ch[0].Health.Reasons) != 2 {
		t.Fatalf("new cause: %+v, want an update without transition, since %v", ch, t0)
	}
}

// TestRestoreKeepsSinceAndExits: a new evaluator seeded from the stored
// health neither re-announces the state nor forgets exits.
func TestRestoreKeepsSinceAndExits(t *testing.T) {
	stored := event.NodeHealth{
		Node: "n1", State: event.HealthDegraded, Reason: "server srv restarting repeatedly",
		Reasons: []string{"server srv restarting repeatedly"}, Since: t0, HeartbeatAt: t0.Add(time.Minute),
		Workloads: []event.WorkloadHealth{{Name: "srv", State: event.WorkloadRunning, Since: t0, Exits: 3,
			ExitTimes: []time.Time{t0, t0.Add(time.Second), t0.Add(2 * time.Second)}}},
	}
	f := nodehealth.New(cfg)
	f.Restore(stored)
	f.Registration(reg(t0.Add(time.Minute), node.StateRunning))
	if ch := f.Judge(t0.Add(time.Minute)); len(ch) != 0 {
		t.Fatalf("restored judgement changed: %+v", ch[0].Health)
	}
	ch := f.Judge(t0.Add(11 * time.Minute))
	if len(ch) != 1 || ch[0].Health.State != event.HealthDown {
		t.Fatalf("11 minutes without heartbeat: %+v", ch)
	}
}

func TestSamples(t *testing.T) {
	f := nodehealth.New(cfg)
	f.Registration(reg(t0, node.StateRunning))
	f.Host(host(t0, 42, 50), t0)
	f.Runtime("srv", node.RuntimeEvent{Node: "n1", Name: "srv", Kind: "die", Time: t0})
	f.Judge(t0)
	got := map[string]float64{}
	for _, s := range f.Samples(t0) {
		got[s.Metric+"/"+s.Labels["workload"]] = s.Value
	}
	want := map[string]float64{"node_down/": 0, "node_degraded/": 1, "node_cpu_percent/": 42, "node_memory_percent/": 50,
		"node_disk_percent/": 10, "workload_down/srv": 1, "workload_exits/srv": 1, "node_heartbeat_age_seconds/": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	f.Forget("n1", []string{"srv"})
	if nr := f.NotRunning(); len(nr) != 0 {
		t.Fatalf("forgotten workload still listed: %v", nr)
	}
}
