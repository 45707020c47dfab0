package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// enqueue puts v on the outbox for subj with the given message id and the
// trace context of ctx.
func (a *Agent) enqueue(ctx context.Context, subj, msgID string, v any, hdr nats.Header) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", msgID, err)
	}
	if hdr == nil {
		hdr = nats.Header{}
	}
	bus.Inject(ctx, hdr)
	return a.outbox.Add(outbox.Msg{Subject: subj, MsgID: msgID, Header: hdr, Data: data})
}

// enqueueEvent puts a domain event on the outbox.
func (a *Agent) enqueueEvent(ctx context.Context, subj string, typ event.Type, id string, data any) error {
	env, err := event.New(typ, id, "agent/"+a.node.ID, data)
	if err != nil {
		return err
	}
	return a.enqueue(ctx, subj, id, env, nats.Header{event.Header: []string{string(typ)}})
}

func (a *Agent) announce() error {
	at := a.node.StartedAt
	return a.enqueueEvent(context.Background(), subject.NodeEvent(a.node.ID), event.NodeRegistered,
		fmt.Sprintf("%s:registered:%d", a.node.ID, at.UnixNano()), a.node)
}

// heartbeat writes the node's entry now and every interval. NATS being
// unreachable only delays it: the next beat tries again.
func (a *Agent) heartbeat(ctx context.Context) error {
	var kv jetstream.KeyValue
	t := time.NewTicker(a.cfg.Heartbeat)
	defer t.Stop()
	for {
		if kv == nil {
			kv, _ = a.env.JS.KeyValue(ctx, subject.BucketNodes)
		}
		if kv != nil {
			if err := a.putNode(ctx, kv, node.StateRunning); err != nil && ctx.Err() == nil {
				a.log.Debug("heartbeat", logkey.Err, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *Agent) putNode(ctx context.Context, kv jetstream.KeyValue, state string) error {
	n := a.node
	n.State = state
	n.HeartbeatAt = time.Now().UTC()
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, a.cfg.Heartbeat)
	defer cancel()
	_, err = kv.Put(pctx, a.node.ID, data)
	return err
}

// markStopped records a clean exit, best effort, under a fresh deadline.
func (a *Agent) markStopped(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	kv, err := a.env.JS.KeyValue(sctx, subject.BucketNodes)
	if err == nil {
		err = a.putNode(sctx, kv, node.StateStopped)
	}
	if err != nil {
		a.log.Warn("marking node stopped", logkey.Err, err)
	}
}

var eventTypes = map[runtime.EventKind]event.Type{
	runtime.EventStart:        event.RuntimeStarted,
	runtime.EventDie:          event.RuntimeDied,
	runtime.EventOOM:          event.RuntimeOOM,
	runtime.EventHealthStatus: event.RuntimeHealth,
	runtime.EventRestart:      event.RuntimeRestarted,
}

// forwardEvents turns runtime events into EVENTS messages, resubscribing
// with backoff when the runtime's event stream breaks.
func (a *Agent) forwardEvents(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	bo.MaxInterval = 10 * time.Second
	for ctx.Err() == nil {
		s, err := a.rt.Events(ctx)
		if err == nil {
			for ev := range s.C {
				bo.Reset()
				a.forward(ctx, ev)
			}
			err = s.Err()
		}
		if ctx.Err() != nil {
			return nil
		}
		wait := bo.NextBackOff()
		a.log.Warn("runtime event stream ended, resubscribing", logkey.Err, err, logkey.Delay, wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	return nil
}

func (a *Agent) forward(ctx context.Context, ev runtime.Event) {
	typ, ok := eventTypes[ev.Kind]
	if !ok {
		return
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	payload := node.RuntimeEvent{
		Node: a.node.ID, Workload: ev.ID, Name: ev.Name, Kind: string(ev.Kind),
		ExitCode: ev.ExitCode, Health: ev.Health, Time: at.UTC(),
	}
	id := fmt.Sprintf("%s:%s:%s:%d", a.node.ID, ev.ID, ev.Kind, at.UnixNano())
	if err := a.enqueueEvent(ctx, subject.RuntimeEvent(a.node.ID, workloadToken(ev.ID, ev.Name)), typ, id, payload); err != nil {
		a.log.Error("buffering runtime event", logkey.Workload, ev.Name, logkey.Err, err)
	}
}

// workloadToken is the subject token for a workload: its name when that is
// a valid token (readable, and stable across re-creation), else its id.
func workloadToken(id, name string) string {
	if subject.ValidToken(name) {
		return name
	}
	return id
}

// sampleStats publishes host stats and every running workload's stats each
// interval.
func (a *Agent) sampleStats(ctx context.Context) error {
	t := time.NewTicker(a.cfg.StatsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		reply := a.statsNow(ctx)
		stamp := reply.Host.Time.UnixMilli()
		if err := a.enqueue(ctx, subject.HostStats(a.node.ID), fmt.Sprintf("%s:host:%d", a.node.ID, stamp), reply.Host, nil); err != nil {
			a.log.Error("buffering host stats", logkey.Err, err)
		}
		for _, ws := range reply.Workloads {
			tok := workloadToken(ws.Workload, ws.Name)
			id := fmt.Sprintf("%s:%s:%d", a.node.ID, tok, stamp)
			if err := a.enqueue(ctx, subject.WorkloadStats(a.node.ID, tok), id, ws, nil); err != nil {
				a.log.Error("buffering workload stats", logkey.Err, err)
			}
		}
	}
}

// statsNow samples the host and every running workload.
func (a *Agent) statsNow(ctx context.Context) node.StatsReply {
	host, err := a.probe.Sample()
	if err != nil {
		a.log.Debug("sampling host", logkey.Err, err)
	}
	reply := node.StatsReply{Host: host}
	ws, err := a.rt.List(ctx)
	if err != nil {
		a.log.Warn("listing workloads", logkey.Err, err)
		return reply
	}
	for _, w := range ws {
		if w.State != runtime.StateRunning {
			continue
		}
		s, err := a.rt.Stats(ctx, w.ID)
		if err != nil {
			continue // it stopped between List and Stats
		}
		reply.Workloads = append(reply.Workloads, node.WorkloadStats{
			Node: a.node.ID, Workload: w.ID, Name: w.Name, Time: s.Time.UTC(),
			CPUPercent: s.CPUPercent, MemoryBytes: s.MemoryBytes, MemoryLimitBytes: s.MemoryLimitBytes,
			NetRxBytes: s.NetRxBytes, NetTxBytes: s.NetTxBytes,
			BlockReadBytes: s.BlockReadBytes, BlockWriteBytes: s.BlockWriteBytes, PIDs: s.PIDs,
		})
	}
	return reply
}
