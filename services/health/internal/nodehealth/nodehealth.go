// Package nodehealth judges each node of the fleet healthy, degraded or
// down from what its agent reports: the registration and heartbeat in the
// nodes bucket, host stats, workload stats and runtime events. Fleet is
// the in-memory view; it does no I/O, so the judgement is tested without
// NATS, and the caller stores what changed in the node_health bucket.
package nodehealth

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Config holds the thresholds of the judgement.
type Config struct {
	// DownAfter is the grace: a node whose last heartbeat is older is down.
	DownAfter time.Duration
	// LagAfter marks a node degraded when its heartbeat, or the stats it
	// sends, are that late (an agent catching up on a backlog).
	LagAfter time.Duration
	// CPU, Memory and Disk are the percentages at which a node is degraded
	// by resource use.
	CPU, Memory, Disk float64
	// RestartWindow is how far back workload exits count; Restarts exits
	// within it mark a workload as restarting repeatedly.
	RestartWindow time.Duration
	Restarts      int
}

// Fleet is the view of every node. It is safe for concurrent use.
type Fleet struct {
	cfg   Config
	mu    sync.Mutex
	nodes map[string]*nodeState
}

type nodeState struct {
	reg      node.Node
	known    bool // reg holds a registration (from the bucket or restored)
	host     node.HostStats
	hostSeen time.Time // when host was received
	lag      time.Duration
	work     map[string]*workload
	judged   event.NodeHealth
}

type workload struct {
	event.WorkloadHealth
	stats     node.WorkloadStats
	statsSeen time.Time
}

// New returns an empty fleet view.
func New(cfg Config) *Fleet {
	return &Fleet{cfg: cfg, nodes: map[string]*nodeState{}}
}

func (f *Fleet) node(id string) *nodeState {
	n, ok := f.nodes[id]
	if !ok {
		n = &nodeState{work: map[string]*workload{}}
		f.nodes[id] = n
	}
	return n
}

// Restore seeds a node from its stored health, so a new evaluator keeps
// Since, the workloads and their exits instead of starting blank.
func (f *Fleet) Restore(h event.NodeHealth) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.node(h.Node)
	n.judged = h
	if !n.known {
		n.reg = node.Node{ID: h.Node, HeartbeatAt: h.HeartbeatAt, State: node.StateRunning}
		n.known = !h.HeartbeatAt.IsZero()
	}
	for _, w := range h.Workloads {
		if _, ok := n.work[w.Name]; !ok {
			n.work[w.Name] = &workload{WorkloadHealth: w}
		}
	}
}

// Registration records a node's entry from the nodes bucket.
func (f *Fleet) Registration(reg node.Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.node(reg.ID)
	n.reg, n.known = reg, true
}

// Remove forgets a node whose entry was deleted.
func (f *Fleet) Remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.nodes, id)
}

// Host records a host sample received at now.
func (f *Fleet) Host(s node.HostStats, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.node(s.Node)
	if s.Time.Before(n.host.Time) {
		return // an older sample replayed late
	}
	n.host, n.hostSeen, n.lag = s, now, max(now.Sub(s.Time), 0)
}

// Workload records a workload sample under its subject token. A sample
// newer than the workload's last event proves it runs.
func (f *Fleet) Workload(token string, s node.WorkloadStats, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.node(s.Node)
	w := n.workload(token)
	if s.Time.Before(w.stats.Time) {
		return
	}
	w.stats, w.statsSeen = s, now
	if w.State != event.WorkloadRunning && s.Time.After(w.Since) {
		w.State, w.Reason, w.Since = event.WorkloadRunning, "", s.Time
	}
}

func (n *nodeState) workload(token string) *workload {
	w, ok := n.work[token]
	if !ok {
		w = &workload{WorkloadHealth: event.WorkloadHealth{Name: token, State: event.WorkloadRunning}}
		n.work[token] = w
	}
	return w
}

// Runtime applies a runtime event about the workload with subject token.
// Events older than what is known are ignored, so a redelivery or a late
// replay never moves a workload back in time.
func (f *Fleet) Runtime(token string, ev node.RuntimeEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.node(ev.Node)
	w := n.workload(token)
	if ev.Time.Before(w.Since) {
		return
	}
	switch ev.Kind {
	case "start", "restart":
		w.State, w.Reason = event.WorkloadRunning, ""
	case "die":
		w.State, w.Reason = event.WorkloadDown, fmt.Sprintf("exited with code %d", ev.ExitCode)
		w.ExitTimes = append(w.ExitTimes, ev.Time)
	case "oom":
		w.State, w.Reason = event.WorkloadDown, "killed: out of memory"
	case "health_status":
		if ev.Health == "unhealthy" {
			w.State, w.Reason = event.WorkloadUnhealthy, "health check failing"
		} else if w.State == event.WorkloadUnhealthy {
			w.State, w.Reason = event.WorkloadRunning, ""
		}
	default:
		return
	}
	w.Since = ev.Time
}

// NotRunning returns, by node, the workloads that are not running: the
// ones a sweep should check still exist.
func (f *Fleet) NotRunning() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for id, n := range f.nodes {
		for name, w := range n.work {
			if w.State != event.WorkloadRunning {
				out[id] = append(out[id], name)
			}
		}
	}
	return out
}

// Forget drops workloads of a node that its agent no longer has.
func (f *Fleet) Forget(nodeID string, names []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[nodeID]; ok {
		for _, name := range names {
			delete(n.work, name)
		}
	}
}

// Change is a node whose judgement changed: Health is the new value for
// the node_health bucket; Transition is set when the state itself changed
// (a health.changed.v1 event).
type Change struct {
	Health     event.NodeHealth
	Transition *event.HealthChange
}

// Judge re-judges every node at now and returns those whose state,
// reasons or workloads changed.
func (f *Fleet) Judge(now time.Time) []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Change
	for _, id := range slices.Sorted(maps.Keys(f.nodes)) {
		n := f.nodes[id]
		if !n.known {
			continue // stats before the first registration: wait for it
		}
		h := f.judge(id, n, now)
		prev := n.judged
		if prev.State == h.State && slices.Equal(prev.Reasons, h.Reasons) && sameWorkloads(prev.Workloads, h.Workloads) {
			continue
		}
		h.Since = prev.Since
		var tr *event.HealthChange
		if prev.State != h.State || prev.Since.IsZero() {
			h.Since = now
			tr = &event.HealthChange{Node: id, From: prev.State, To: h.State, Reason: h.Reason, Since: now}
		}
		n.judged = h
		out = append(out, Change{Health: h, Transition: tr})
	}
	return out
}

func (f *Fleet) judge(id string, n *nodeState, now time.Time) event.NodeHealth {
	h := event.NodeHealth{Node: id, HeartbeatAt: n.reg.HeartbeatAt, UpdatedAt: now}
	for _, name := range slices.Sorted(maps.Keys(n.work)) {
		w := n.work[name]
		w.ExitTimes = slices.DeleteFunc(w.ExitTimes, func(t time.Time) bool { return now.Sub(t) > f.cfg.RestartWindow })
		w.Exits = len(w.ExitTimes)
		wh := w.WorkloadHealth
		wh.ExitTimes = slices.Clone(w.ExitTimes)
		h.Workloads = append(h.Workloads, wh)
	}
	age := now.Sub(n.reg.HeartbeatAt)
	switch {
	case n.reg.State == node.StateStopped && age > f.cfg.DownAfter:
		h.Reasons = []string{fmt.Sprintf("agent stopped %s ago", age.Round(time.Second))}
		h.State = event.HealthDown
	case n.reg.State == node.StateStopped:
		// A clean stop is most often a restart, and the node's servers
		// outlive their agent: degraded, not down, until it has been gone
		// as long as a silent node may be.
		h.Reasons = []string{"agent stopped; its servers keep serving"}
		h.State = event.HealthDegraded
	case age > f.cfg.DownAfter:
		h.Reasons = []string{fmt.Sprintf("no heartbeat for %s (grace %s)", age.Round(time.Second), f.cfg.DownAfter)}
		h.State = event.HealthDown
	default:
		h.Reasons = f.degradations(n, now, age)
		h.State = event.HealthHealthy
		if len(h.Reasons) > 0 {
			h.State = event.HealthDegraded
		}
	}
	h.Reason = strings.Join(h.Reasons, "; ")
	return h
}

// degradations lists why a live node is not healthy. Reason texts stay
// stable while the cause lasts (no ages or live values), so the stored
// health changes only when a cause comes or goes.
func (f *Fleet) degradations(n *nodeState, now time.Time, age time.Duration) []string {
	var rs []string
	if age > f.cfg.LagAfter {
		rs = append(rs, fmt.Sprintf("agent lagging: heartbeat more than %s late", f.cfg.LagAfter))
	}
	fresh := now.Sub(n.hostSeen) <= f.cfg.DownAfter
	if fresh && n.lag > f.cfg.LagAfter {
		rs = append(rs, fmt.Sprintf("agent lagging: stats more than %s behind", f.cfg.LagAfter))
	}
	for _, name := range slices.Sorted(maps.Keys(n.work)) {
		w := n.work[name]
		switch {
		case w.State != event.WorkloadRunning:
			rs = append(rs, fmt.Sprintf("server %s %s: %s", name, w.State, w.Reason))
		case f.cfg.Restarts > 0 && w.Exits >= f.cfg.Restarts:
			rs = append(rs, fmt.Sprintf("server %s restarting repeatedly", name))
		}
	}
	if fresh {
		if p, ok := percent(n.host.MemUsedBytes, n.host.MemTotalBytes); ok && p >= f.cfg.Memory {
			rs = append(rs, fmt.Sprintf("memory above %g%%", f.cfg.Memory))
		}
		if n.host.CPUPercent >= f.cfg.CPU {
			rs = append(rs, fmt.Sprintf("cpu above %g%%", f.cfg.CPU))
		}
		if p, ok := percent(n.host.DiskUsed, n.host.DiskTotal); ok && p >= f.cfg.Disk {
			rs = append(rs, fmt.Sprintf("disk above %g%%", f.cfg.Disk))
		}
	}
	return rs
}

func sameWorkloads(a, b []event.WorkloadHealth) bool {
	return slices.EqualFunc(a, b, func(x, y event.WorkloadHealth) bool {
		return x.Name == y.Name && x.State == y.State && x.Reason == y.Reason && x.Exits == y.Exits
	})
}

func percent(used, total uint64) (float64, bool) {
	if total == 0 {
		return 0, false
	}
	return 100 * float64(used) / float64(total), true
}

// Samples returns the series metric alert rules evaluate (see
// alert.Metrics), from the latest judgement.
func (f *Fleet) Samples(now time.Time) []alert.Sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []alert.Sample
	add := func(metric string, v float64, kv ...string) {
		labels := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			labels[kv[i]] = kv[i+1]
		}
		out = append(out, alert.Sample{Metric: metric, Labels: labels, Value: v})
	}
	for id, n := range f.nodes {
		if !n.known || n.judged.State == "" {
			continue
		}
		add("node_down", b2f(n.judged.State == event.HealthDown), "node", id)
		add("node_degraded", b2f(n.judged.State == event.HealthDegraded), "node", id)
		add("node_heartbeat_age_seconds", now.Sub(n.reg.HeartbeatAt).Seconds(), "node", id)
		if n.judged.State == event.HealthDown {
			continue
		}
		if now.Sub(n.hostSeen) <= f.cfg.DownAfter {
			add("node_cpu_percent", n.host.CPUPercent, "node", id)
			if p, ok := percent(n.host.MemUsedBytes, n.host.MemTotalBytes); ok {
				add("node_memory_percent", p, "node", id)
			}
			if p, ok := percent(n.host.DiskUsed, n.host.DiskTotal); ok {
				add("node_disk_percent", p, "node", id)
			}
		}
		for name, w := range n.work {
			add("workload_down", b2f(w.State != event.WorkloadRunning), "node", id, "workload", name)
			add("workload_exits", float64(w.Exits), "node", id, "workload", name)
		}
	}
	return out
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// NodeView is one node as the metrics endpoint shows it.
type NodeView struct {
	ID               string
	State            string
	HeartbeatAge     time.Duration
	CPUPercent       float64
	MemUsed, MemTot  uint64
	DiskUsed, DiskTo uint64
	HostFresh        bool
	Workloads        []WorkloadView
}

// WorkloadView is one workload as the metrics endpoint shows it.
type WorkloadView struct {
	Name        string
	State       string
	CPUPercent  float64
	MemoryBytes uint64
	Exits       int
	StatsFresh  bool
}

// View returns every judged node for the metrics endpoint.
func (f *Fleet) View(now time.Time) []NodeView {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []NodeView
	for id, n := range f.nodes {
		if !n.known || n.judged.State == "" {
			continue
		}
		v := NodeView{
			ID: id, State: n.judged.State, HeartbeatAge: now.Sub(n.reg.HeartbeatAt),
			CPUPercent: n.host.CPUPercent, MemUsed: n.host.MemUsedBytes, MemTot: n.host.MemTotalBytes,
			DiskUsed: n.host.DiskUsed, DiskTo: n.host.DiskTotal, HostFresh: now.Sub(n.hostSeen) <= f.cfg.DownAfter,
		}
		for name, w := range n.work {
			v.Workloads = append(v.Workloads, WorkloadView{
				Name: name, State: w.State, CPUPercent: w.stats.CPUPercent, MemoryBytes: w.stats.MemoryBytes,
				Exits: w.Exits, StatsFresh: w.State == event.WorkloadRunning && now.Sub(w.statsSeen) <= f.cfg.DownAfter,
			})
		}
		out = append(out, v)
	}
	return out
}

// Token is the subject token a workload is known by: its name when that is
// a valid token, else its id (the agent's rule for its subjects).
func Token(id, name string) string {
	if subject.ValidToken(name) {
		return name
	}
	return id
}
