package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// Limits of the logs command.
const (
	maxLogLines      = 10_000
	defaultFollowFor = time.Hour
	chunkLines       = 200
	chunkWait        = 100 * time.Millisecond
)

// serveCommands answers the node's request/reply commands until ctx ends.
// Followed logs run in goroutines that end with ctx and are waited for.
func (a *Agent) serveCommands(ctx context.Context) error {
	srv, err := micro.AddService(a.env.NC, micro.Config{
		Name:        subject.AgentServiceName,
		Version:     version.Semver(),
		Description: "agent of node " + a.node.ID,
		QueueGroup:  subject.AgentQueueGroup(a.node.ID),
	})
	if err != nil {
		return errs.Wrap(errs.Internal, err, "starting command service")
	}
	a.env.Requests.Add(srv)
	var follows sync.WaitGroup
	const timeout = 30 * time.Second
	endpoints := map[string]micro.Handler{
		node.CmdStatus:      bus.Endpoint(ctx, a.log, timeout, a.status),
		node.CmdWorkloads:   bus.Endpoint(ctx, a.log, timeout, a.workloads),
		node.CmdRestart:     bus.Endpoint(ctx, a.log, timeout, a.restart),
		node.CmdStats:       bus.Endpoint(ctx, a.log, timeout, func(ctx context.Context, _ struct{}) (node.StatsReply, error) { return a.statsNow(ctx), nil }),
		node.CmdCutSessions: bus.Endpoint(ctx, a.log, timeout, a.cutSessions),
		node.CmdLogs: bus.Endpoint(ctx, a.log, timeout, func(rctx context.Context, req node.LogsRequest) (node.LogsReply, error) {
			return a.logs(rctx, ctx, &follows, req)
		}),
	}
	for name, h := range endpoints {
		if err := srv.AddEndpoint(name, h, micro.WithEndpointSubject(subject.AgentCmd(a.node.ID, name))); err != nil {
			_ = srv.Stop()
			return errs.Wrap(errs.Internal, err, "adding command %s", name)
		}
	}
	<-ctx.Done()
	err = srv.Stop()
	follows.Wait()
	return err
}

// cutSessions ends the open sessions of the users named on every running
// server of the node. A server whose Xray cannot (a stock build) is named
// in the reply; users without sessions, and a node without servers, are
// no-ops that succeed.
func (a *Agent) cutSessions(ctx context.Context, req node.CutSessionsRequest) (node.CutSessionsReply, error) {
	switch {
	case len(req.Users) == 0:
		return node.CutSessionsReply{}, errs.Field("users", "must name at least one user")
	case len(req.Users) > node.MaxCutUsers:
		return node.CutSessionsReply{}, errs.Field("users", fmt.Sprintf("at most %d per request", node.MaxCutUsers))
	case slices.Contains(req.Users, ""):
		return node.CutSessionsReply{}, errs.Field("users", "must not hold an empty id")
	}
	var out node.CutSessionsReply
	for _, rs := range a.rec.Servers() {
		n, err := rs.Client.CutUsers(ctx, req.Users)
		switch {
		case errs.CodeOf(err) == errs.CodeUnsupported:
			out.Unsupported = append(out.Unsupported, rs.ServerID)
		case err != nil:
			return out, fmt.Errorf("ending sessions on server %s: %w", rs.ServerID, err)
		}
		out.Closed += n
	}
	return out, nil
}

func (a *Agent) status(ctx context.Context, _ struct{}) (node.StatusReply, error) {
	ws, err := a.workloads(ctx, struct{}{})
	n := a.node
	n.State = node.StateRunning
	n.HeartbeatAt = time.Now().UTC()
	return node.StatusReply{Node: n, Workloads: ws.Workloads, Buffered: a.outbox.Len()}, err
}

func (a *Agent) workloads(ctx context.Context, _ struct{}) (node.WorkloadsReply, error) {
	ws, err := a.rt.List(ctx)
	if err != nil {
		return node.WorkloadsReply{}, err
	}
	out := make([]node.Workload, 0, len(ws))
	for _, w := range ws {
		out = append(out, toWorkload(w))
	}
	return node.WorkloadsReply{Workloads: out}, nil
}

func toWorkload(w runtime.Workload) node.Workload {
	return node.Workload{
		ID: w.ID, Name: w.Name, Image: w.Image, State: string(w.State), ExitCode: w.ExitCode,
		OOMKilled: w.OOMKilled, RestartCount: w.RestartCount, Labels: w.Labels,
		CreatedAt: w.CreatedAt, StartedAt: w.StartedAt, FinishedAt: w.FinishedAt,
	}
}

func (a *Agent) restart(ctx context.Context, req node.WorkloadRequest) (node.Workload, error) {
	if req.Workload == "" {
		return node.Workload{}, errs.Field("workload", "must be set")
	}
	if err := a.rt.Restart(ctx, req.Workload, 10*time.Second); err != nil {
		return node.Workload{}, err
	}
	w, err := a.rt.Inspect(ctx, req.Workload)
	if err != nil {
		return node.Workload{}, err
	}
	a.log.Info("restarted workload", logkey.Workload, w.Name)
	return toWorkload(w), nil
}

// logs answers a logs request: the lines at once, or with Follow a stream
// of chunks sent to req.Deliver in a goroutine bound to runCtx.
func (a *Agent) logs(ctx, runCtx context.Context, follows *sync.WaitGroup, req node.LogsRequest) (node.LogsReply, error) {
	var fe []errs.FieldError
	if req.Workload == "" {
		fe = append(fe, errs.FieldError{Field: "workload", Rule: "must be set"})
	}
	if req.Tail < 0 || req.Tail > maxLogLines {
		fe = append(fe, errs.FieldError{Field: "tail", Rule: "must be 0-10000"})
	}
	if req.Follow && req.Deliver == "" {
		fe = append(fe, errs.FieldError{Field: "deliver", Rule: "must be set to follow"})
	}
	if err := errs.Fields(fe...); err != nil {
		return node.LogsReply{}, err
	}
	if _, err := a.rt.Inspect(ctx, req.Workload); err != nil {
		return node.LogsReply{}, err
	}
	opts := runtime.LogOptions{Tail: req.Tail, Follow: req.Follow, Timestamps: req.Timestamps}
	if !req.Follow {
		if opts.Tail == 0 {
			opts.Tail = maxLogLines
		}
		s, err := a.rt.Logs(ctx, req.Workload, opts)
		if err != nil {
			return node.LogsReply{}, err
		}
		var reply node.LogsReply
		for l := range s.C {
			reply.Lines = append(reply.Lines, node.LogLine{Time: l.Time, Stream: l.Stream, Text: l.Text})
		}
		return reply, s.Err()
	}

	d := req.MaxDuration
	if d <= 0 || d > defaultFollowFor {
		d = defaultFollowFor
	}
	fctx, cancel := context.WithTimeout(runCtx, d)
	s, err := a.rt.Logs(fctx, req.Workload, opts)
	if err != nil {
		cancel()
		return node.LogsReply{}, err
	}
	follows.Add(1)
	go func() {
		defer follows.Done()
		defer cancel()
		a.deliverLogs(fctx, s, req.Deliver)
	}()
	return node.LogsReply{}, nil
}

// deliverLogs sends followed lines in chunks as requests to deliver; a
// chunk nobody answers ends the follow (the requester went away).
func (a *Agent) deliverLogs(ctx context.Context, s *runtime.Stream[runtime.LogLine], deliver string) {
	send := func(c node.LogChunk) bool {
		data, _ := json.Marshal(c)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, err := a.env.NC.RequestWithContext(rctx, deliver, data)
		return err == nil
	}
	var chunk node.LogChunk
	tick := time.NewTicker(chunkWait)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-s.C:
			if !ok {
				end := node.LogChunk{Lines: chunk.Lines, End: true}
				if err := s.Err(); err != nil {
					end.Err = err.Error()
				}
				send(end)
				return
			}
			chunk.Lines = append(chunk.Lines, node.LogLine{Time: l.Time, Stream: l.Stream, Text: l.Text})
			if len(chunk.Lines) < chunkLines {
				continue
			}
		case <-tick.C:
			if len(chunk.Lines) == 0 {
				continue
			}
		}
		if !send(chunk) {
			if !errors.Is(ctx.Err(), context.Canceled) {
				a.log.Debug("log follower went away", logkey.Subject, deliver)
			}
			return
		}
		chunk = node.LogChunk{}
	}
}
