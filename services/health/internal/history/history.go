// Package history downsamples what agents report into points for charts
// and trends: per node (host CPU, memory, disk, network, VPN traffic, and
// per workload CPU, memory, network) and per user (traffic). Points of the
// fine step (1 minute) and the coarse step (1 hour) go to two JetStream
// streams whose MaxAge is the retention; a point's message id is its
// series and start, so a point written twice is stored once. Queries read
// a range back and re-bucket it to the asked step.
package history

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
)

// Config sets the steps. Settle is how long a closed step waits for late
// samples before its point is written.
type Config struct {
	Fine, Coarse, Settle time.Duration
}

// Point is one finished point to store: Payload is an event.NodePoint or
// an event.UserPoint.
type Point struct {
	Subject string
	MsgID   string
	Start   time.Time
	Payload any
}

type key struct {
	id    string
	start int64
}

// Downsampler accumulates samples into open points. Safe for concurrent
// use.
type Downsampler struct {
	cfg         Config
	mu          sync.Mutex
	fineNodes   map[key]*event.NodePoint
	coarseNodes map[key]*event.NodePoint
	fineUsers   map[key]*event.UserPoint
	coarseUsers map[key]*event.UserPoint
	lastHost    map[string]node.HostStats
	lastWork    map[string]node.WorkloadStats
}

// New returns an empty downsampler.
func New(cfg Config) *Downsampler {
	return &Downsampler{
		cfg:         cfg,
		fineNodes:   map[key]*event.NodePoint{},
		coarseNodes: map[key]*event.NodePoint{},
		fineUsers:   map[key]*event.UserPoint{},
		coarseUsers: map[key]*event.UserPoint{},
		lastHost:    map[string]node.HostStats{},
		lastWork:    map[string]node.WorkloadStats{},
	}
}

func (d *Downsampler) nodePoint(m map[key]*event.NodePoint, id string, at time.Time, step time.Duration) *event.NodePoint {
	start := at.Truncate(step)
	k := key{id, start.UnixNano()}
	p, ok := m[k]
	if !ok {
		p = &event.NodePoint{Node: id, Start: start.UTC(), Step: step}
		m[k] = p
	}
	return p
}

// delta is the growth of a counter, zero when it went backwards (a reboot
// or a restarted workload reset it).
func delta(prev, cur uint64) uint64 {
	if cur < prev {
		return 0
	}
	return cur - prev
}

// Host adds a host sample.
func (d *Downsampler) Host(s node.HostStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	one := event.NodePoint{
		Samples: 1, CPUAvg: s.CPUPercent, CPUMax: s.CPUPercent,
		MemUsedAvg: float64(s.MemUsedBytes), MemUsedMax: s.MemUsedBytes, MemTotal: s.MemTotalBytes,
		DiskUsed: s.DiskUsed, DiskTotal: s.DiskTotal,
	}
	if prev, ok := d.lastHost[s.Node]; ok && s.Time.After(prev.Time) {
		one.NetRx, one.NetTx = delta(prev.NetRxBytes, s.NetRxBytes), delta(prev.NetTxBytes, s.NetTxBytes)
	}
	if prev, ok := d.lastHost[s.Node]; !ok || s.Time.After(prev.Time) {
		d.lastHost[s.Node] = s
	}
	Merge(d.nodePoint(d.fineNodes, s.Node, s.Time, d.cfg.Fine), one)
}

// Workload adds a workload sample under its subject token.
func (d *Downsampler) Workload(token string, s node.WorkloadStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := event.WorkloadPoint{
		Name: token, Samples: 1, CPUAvg: s.CPUPercent, CPUMax: s.CPUPercent,
		MemAvg: float64(s.MemoryBytes), MemMax: s.MemoryBytes, MemLimit: s.MemoryLimitBytes,
	}
	lk := s.Node + "/" + token
	if prev, ok := d.lastWork[lk]; ok && s.Time.After(prev.Time) {
		w.NetRx, w.NetTx = delta(prev.NetRxBytes, s.NetRxBytes), delta(prev.NetTxBytes, s.NetTxBytes)
		w.BlockRead, w.BlockWrite = delta(prev.BlockReadBytes, s.BlockReadBytes), delta(prev.BlockWriteBytes, s.BlockWriteBytes)
	}
	if prev, ok := d.lastWork[lk]; !ok || s.Time.After(prev.Time) {
		d.lastWork[lk] = s
	}
	Merge(d.nodePoint(d.fineNodes, s.Node, s.Time, d.cfg.Fine), event.NodePoint{Workloads: []event.WorkloadPoint{w}})
}

// Usage adds a usage record: the node's VPN traffic and each user's.
func (d *Downsampler) Usage(r usage.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var up, down int64
	for _, u := range r.Users {
		up += u.Uplink
		down += u.Downlink
		start := r.End.Truncate(d.cfg.Fine)
		k := key{u.User, start.UnixNano()}
		p, ok := d.fineUsers[k]
		if !ok {
			p = &event.UserPoint{User: u.User, Start: start.UTC(), Step: d.cfg.Fine}
			d.fineUsers[k] = p
		}
		p.Uplink += u.Uplink
		p.Downlink += u.Downlink
	}
	Merge(d.nodePoint(d.fineNodes, r.Node, r.End, d.cfg.Fine), event.NodePoint{Uplink: up, Downlink: down})
}

// Flush closes every point whose step ended at least Settle before now and
// returns them to be stored: fine points first, each also folded into its
// coarse point, then the coarse points that closed.
func (d *Downsampler) Flush(now time.Time) []Point {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Point
	done := func(start time.Time, step time.Duration) bool { return !start.Add(step + d.cfg.Settle).After(now) }
	for _, k := range sortedKeys(d.fineNodes) {
		p := d.fineNodes[k]
		if !done(p.Start, p.Step) {
			continue
		}
		delete(d.fineNodes, k)
		Merge(d.nodePoint(d.coarseNodes, p.Node, p.Start, d.cfg.Coarse), *p)
		out = append(out, nodeOut(subject.ResolutionFine, *p))
	}
	for _, k := range sortedKeys(d.fineUsers) {
		p := d.fineUsers[k]
		if !done(p.Start, p.Step) {
			continue
		}
		delete(d.fineUsers, k)
		cstart := p.Start.Truncate(d.cfg.Coarse)
		ck := key{p.User, cstart.UnixNano()}
		c, ok := d.coarseUsers[ck]
		if !ok {
			c = &event.UserPoint{User: p.User, Start: cstart, Step: d.cfg.Coarse}
			d.coarseUsers[ck] = c
		}
		c.Uplink += p.Uplink
		c.Downlink += p.Downlink
		out = append(out, userOut(subject.ResolutionFine, *p))
	}
	for _, k := range sortedKeys(d.coarseNodes) {
		p := d.coarseNodes[k]
		if done(p.Start, p.Step) {
			delete(d.coarseNodes, k)
			out = append(out, nodeOut(subject.ResolutionCoarse, *p))
		}
	}
	for _, k := range sortedKeys(d.coarseUsers) {
		p := d.coarseUsers[k]
		if done(p.Start, p.Step) {
			delete(d.coarseUsers, k)
			out = append(out, userOut(subject.ResolutionCoarse, *p))
		}
	}
	return out
}

// Seed folds stored fine points into the open coarse points, so an
// evaluator that takes over mid-hour does not lose the hour so far.
func (d *Downsampler) Seed(fine []event.NodePoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range fine {
		Merge(d.nodePoint(d.coarseNodes, p.Node, p.Start, d.cfg.Coarse), p)
	}
}

func sortedKeys[V any](m map[key]V) []key {
	return slices.SortedFunc(maps.Keys(m), func(a, b key) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
}

func nodeOut(res string, p event.NodePoint) Point {
	return Point{
		Subject: subject.NodeHistory(res, p.Node),
		MsgID:   fmt.Sprintf("%s:node:%s:%d", res, p.Node, p.Start.Unix()),
		Start:   p.Start, Payload: p,
	}
}

func userOut(res string, p event.UserPoint) Point {
	return Point{
		Subject: subject.UserHistory(res, p.User),
		MsgID:   fmt.Sprintf("%s:user:%s:%d", res, p.User, p.Start.Unix()),
		Start:   p.Start, Payload: p,
	}
}

// Merge folds p into into: averages weighted by samples, maxima, sums of
// traffic, the latest totals, and workloads merged by name. It is how a
// sample joins a point, a fine point joins a coarse one, and a query
// re-buckets points to a wider step.
func Merge(into *event.NodePoint, p event.NodePoint) {
	if p.Samples > 0 {
		n := float64(into.Samples + p.Samples)
		into.CPUAvg = (into.CPUAvg*float64(into.Samples) + p.CPUAvg*float64(p.Samples)) / n
		into.MemUsedAvg = (into.MemUsedAvg*float64(into.Samples) + p.MemUsedAvg*float64(p.Samples)) / n
		into.Samples += p.Samples
		into.CPUMax = max(into.CPUMax, p.CPUMax)
		into.MemUsedMax = max(into.MemUsedMax, p.MemUsedMax)
		into.MemTotal, into.DiskUsed, into.DiskTotal = p.MemTotal, p.DiskUsed, p.DiskTotal
	}
	into.NetRx += p.NetRx
	into.NetTx += p.NetTx
	into.Uplink += p.Uplink
	into.Downlink += p.Downlink
	for _, w := range p.Workloads {
		i := slices.IndexFunc(into.Workloads, func(x event.WorkloadPoint) bool { return x.Name == w.Name })
		if i < 0 {
			into.Workloads = append(into.Workloads, w)
			continue
		}
		x := &into.Workloads[i]
		if n := float64(x.Samples + w.Samples); n > 0 {
			x.CPUAvg = (x.CPUAvg*float64(x.Samples) + w.CPUAvg*float64(w.Samples)) / n
			x.MemAvg = (x.MemAvg*float64(x.Samples) + w.MemAvg*float64(w.Samples)) / n
		}
		x.Samples += w.Samples
		x.CPUMax, x.MemMax = max(x.CPUMax, w.CPUMax), max(x.MemMax, w.MemMax)
		x.NetRx, x.NetTx = x.NetRx+w.NetRx, x.NetTx+w.NetTx
		x.BlockRead, x.BlockWrite = x.BlockRead+w.BlockRead, x.BlockWrite+w.BlockWrite
		if w.MemLimit != 0 {
			x.MemLimit = w.MemLimit
		}
	}
}
