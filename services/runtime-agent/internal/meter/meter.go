// Package meter turns Xray's per-user traffic counters into usage records
// that neither lose nor double-count a byte.
//
// Xray counts bytes per user cumulatively from its start. The meter reads
// those counters without resetting them, remembers the last value it saw
// per Xray instance and user, and emits the difference as one usage.Record
// per window. Crash safety comes from one rule: the new counters, the next
// window number and the record itself are written to disk in one atomic
// file write BEFORE the record is queued for publishing. A crash before
// that write loses nothing (the next window recounts from the old
// counters); a crash after it re-queues the same record on restart, which
// the record's message id (<node>:<window>) and the registry's per-node
// high-water mark deduplicate.
//
// A new Xray instance (a restart) starts from zero, so its whole counters
// are new traffic. Windows are numbered from the wall clock in milliseconds
// (and always above the previous one), so a node whose state was lost
// still numbers above what the registry has counted.
package meter

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
)

// Counter is one user's cumulative bytes in one Xray instance.
type Counter struct {
	Up   int64 `json:"up"`
	Down int64 `json:"down"`
}

// Reading is one read of an Xray instance's counters.
type Reading struct {
	// Instance identifies one run of one Xray (e.g. workload id and start
	// time): when it changes, counters restarted from zero.
	Instance string
	// Counters by user id; nil means the instance runs but could not be
	// read this time (its last values are kept).
	Counters map[string]Counter
}

// Sink queues a record for publishing; the agent's outbox is one.
type Sink interface {
	Add(outbox.Msg) error
}

// state is what the meter keeps on disk.
type state struct {
	Window    uint64                        `json:"window"`
	Instances map[string]map[string]Counter `json:"instances"`
	// Pending is the last record written; it is queued again on start in
	// case the process died before queueing it.
	Pending *usage.Record `json:"pending,omitempty"`
}

// Meter turns readings into records. It is not safe for concurrent use:
// one goroutine (the agent's usage loop) drives it.
type Meter struct {
	node string
	path string
	out  Sink
	log  *slog.Logger
	now  func() time.Time
	st   state
	last time.Time
	// queued tells whether st.Pending reached the sink; a record whose
	// queueing failed is queued again before the next one.
	queued bool
}

// Open loads the meter's state from dir (creating it on first use) and
// re-queues the record that was pending when the process last stopped.
func Open(dir, node string, out Sink, log *slog.Logger) (*Meter, error) {
	if !subject.ValidToken(node) {
		return nil, fmt.Errorf("meter: invalid node id %q", node)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating meter dir: %w", err)
	}
	m := &Meter{
		node: node, path: filepath.Join(dir, "meter.json"), out: out, log: log, now: time.Now,
		st: state{Instances: map[string]map[string]Counter{}},
	}
	data, err := os.ReadFile(m.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading meter state: %w", err)
	default:
		if err := json.Unmarshal(data, &m.st); err != nil {
			return nil, fmt.Errorf("decoding meter state %s: %w", m.path, err)
		}
		if m.st.Instances == nil {
			m.st.Instances = map[string]map[string]Counter{}
		}
	}
	m.last = m.now()
	if m.st.Window > 0 && m.st.Window < uint64(m.last.UnixMilli()) {
		// The next window starts where the last recorded one ended (its
		// number is its end, in milliseconds): its bytes may have been
		// moved while this process was down, and the registry checks
		// them against the window's length.
		m.last = time.UnixMilli(int64(m.st.Window)).UTC()
	}
	if err := m.requeue(); err != nil {
		return nil, err
	}
	return m, nil
}

// Window is the number of the last window recorded.
func (m *Meter) Window() uint64 { return m.st.Window }

// Observe takes one round of readings (every running Xray instance, also
// those that could not be read) and records the traffic since the last
// round as one usage record, returning it. Instances missing from readings
// are gone: their state is dropped. A round without traffic records
// nothing and returns a record with no users.
func (m *Meter) Observe(readings []Reading) (usage.Record, error) {
	if err := m.requeue(); err != nil {
		return usage.Record{}, err
	}
	now := m.now().UTC()
	next := state{Instances: make(map[string]map[string]Counter, len(readings))}
	deltas := map[string]Counter{}
	for _, r := range readings {
		prev := m.st.Instances[r.Instance]
		if r.Counters == nil {
			if prev != nil {
				next.Instances[r.Instance] = prev
			}
			continue
		}
		cur := make(map[string]Counter, len(r.Counters))
		for user, c := range r.Counters {
			p := prev[user]
			d := Counter{Up: since(p.Up, c.Up), Down: since(p.Down, c.Down)}
			if d.Up > 0 || d.Down > 0 {
				t := deltas[user]
				deltas[user] = Counter{Up: t.Up + d.Up, Down: t.Down + d.Down}
			}
			cur[user] = c
		}
		next.Instances[r.Instance] = cur
	}

	rec := usage.Record{Node: m.node, Start: m.last, End: now}
	if len(deltas) > 0 {
		next.Window = max(m.st.Window+1, uint64(now.UnixMilli()))
		rec.Window = next.Window
		rec.Users = make([]usage.UserDelta, 0, len(deltas))
		for user, d := range deltas {
			rec.Users = append(rec.Users, usage.UserDelta{User: user, Uplink: d.Up, Downlink: d.Down, LastSeen: now})
		}
		sort.Slice(rec.Users, func(i, j int) bool { return rec.Users[i].User < rec.Users[j].User })
		next.Pending = &rec
	} else {
		next.Window = m.st.Window
	}
	if err := m.save(next); err != nil {
		return usage.Record{}, err
	}
	m.st, m.last, m.queued = next, now, len(deltas) == 0
	if len(deltas) == 0 {
		return rec, nil
	}
	if err := m.queue(rec); err != nil {
		return usage.Record{}, err
	}
	m.queued = true
	return rec, nil
}

// requeue queues the pending record if it has not reached the sink.
func (m *Meter) requeue() error {
	if m.queued || m.st.Pending == nil {
		return nil
	}
	if err := m.queue(*m.st.Pending); err != nil {
		return err
	}
	m.queued = true
	return nil
}

// ObserveOne records one instance's reading, leaving every other instance
// as it was: the reading an Xray gets just before it is removed.
func (m *Meter) ObserveOne(r Reading) (usage.Record, error) {
	readings := []Reading{r}
	for inst := range m.st.Instances {
		if inst != r.Instance {
			readings = append(readings, Reading{Instance: inst})
		}
	}
	return m.Observe(readings)
}

// since is the growth of a cumulative counter; a counter below its last
// value was reset (Xray restarted under the same identity), so all of it
// is new.
func since(prev, cur int64) int64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

func (m *Meter) queue(r usage.Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding usage record %s: %w", r.MsgID(), err)
	}
	if err := m.out.Add(outbox.Msg{Subject: subject.Usage(r.Node), MsgID: r.MsgID(), Data: data}); err != nil {
		return fmt.Errorf("queueing usage record %s: %w", r.MsgID(), err)
	}
	m.log.Debug("usage recorded", logkey.MsgID, r.MsgID(), logkey.Count, len(r.Users))
	return nil
}

// save writes st atomically and durably.
func (m *Meter) save(st state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encoding meter state: %w", err)
	}
	return atomicfile.Write(m.path, data, 0o600, true)
}

// InstanceID builds a Reading.Instance from what identifies one run of an
// Xray workload.
func InstanceID(server, workload string, startedAt time.Time) string {
	return strings.Join([]string{server, workload, startedAt.UTC().Format(time.RFC3339Nano)}, "/")
}
