package servers

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// defaultHeartbeat is assumed for node records that do not say their
// interval.
const defaultHeartbeat = 10 * time.Second

// Runtimes answers `vpn runtime status`: per node (one, or every node
// with a record or a server), the runtimes its agent reported, the
// default for new servers and whose choice it is, and the servers running
// on each runtime with their status.
func (r *Registry) Runtimes(ctx context.Context, req node.RuntimesRequest) (node.RuntimesReply, error) {
	if req.Node != "" && !subject.ValidToken(req.Node) {
		return node.RuntimesReply{}, errs.Field("node", NodeRule)
	}
	list, err := r.List(ctx, server.ListRequest{Node: req.Node})
	if err != nil {
		return node.RuntimesReply{}, err
	}
	records, err := r.nodeRecords(ctx, req.Node)
	if err != nil {
		return node.RuntimesReply{}, err
	}
	ids := map[string]bool{}
	for id := range records {
		ids[id] = true
	}
	for _, s := range list.Servers {
		ids[s.Node] = true
	}
	if req.Node != "" && !ids[req.Node] {
		return node.RuntimesReply{}, errs.New(errs.NotFound, "node %s has no record and no server", req.Node)
	}
	now := r.now()
	out := node.RuntimesReply{Nodes: []node.NodeRuntimes{}}
	for id := range ids {
		n, seen := records[id]
		nr := node.NodeRuntimes{Node: id, Agent: agentState(n, seen, now), Runtimes: []node.RuntimeServers{}}
		if seen {
			nr.Default, nr.DefaultFrom = n.Runtime, n.RuntimeChosen
			infos := n.Runtimes
			if len(infos) == 0 && n.Runtime != "" {
				infos = []node.RuntimeInfo{{Kind: n.Runtime, Version: n.RuntimeVersion}}
			}
			for _, info := range infos {
				nr.Runtimes = append(nr.Runtimes, node.RuntimeServers{RuntimeInfo: info, Servers: []node.RuntimeServer{}})
			}
		}
		if def, err := r.enrolledDefault(ctx, id); err != nil {
			return node.RuntimesReply{}, err
		} else if def != "" {
			nr.Default, nr.DefaultFrom = def, "switch (vpn runtime switch)"
		}
		for _, s := range list.Servers {
			if s.Node != id {
				continue
			}
			rs := node.RuntimeServer{
				ID: s.ID, Name: s.Name, State: string(s.Status.State), Reason: s.Status.Reason,
				UsersApplied: s.Status.UsersApplied, UsersDesired: s.Status.UsersDesired, Wanted: s.Runtime,
			}
			i := slices.IndexFunc(nr.Runtimes, func(x node.RuntimeServers) bool { return x.Kind == s.Status.Runtime })
			if s.Status.Runtime == "" || i < 0 {
				nr.Unplaced = append(nr.Unplaced, rs)
				continue
			}
			nr.Runtimes[i].Servers = append(nr.Runtimes[i].Servers, rs)
		}
		out.Nodes = append(out.Nodes, nr)
	}
	slices.SortFunc(out.Nodes, func(a, b node.NodeRuntimes) int { return cmp.Compare(a.Node, b.Node) })
	return out, nil
}

// agentState says whether a node's agent runs, from its record.
func agentState(n node.Node, seen bool, now time.Time) string {
	every := cmp.Or(n.HeartbeatEvery, defaultHeartbeat)
	switch {
	case !seen:
		return node.AgentUnknown
	case n.State == node.StateStopped:
		return node.AgentStopped
	case now.Sub(n.HeartbeatAt) > 3*every:
		return node.AgentDown
	}
	return node.AgentRunning
}

// nodeRecords reads the nodes bucket: one node's record, or every one.
func (r *Registry) nodeRecords(ctx context.Context, only string) (map[string]node.Node, error) {
	out := map[string]node.Node{}
	kv, err := r.js.KeyValue(ctx, subject.BucketNodes)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, unavailable(err, "opening bucket %s", subject.BucketNodes)
	}
	keys := []string{only}
	if only == "" {
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			return nil, unavailable(err, "listing nodes")
		}
		keys = nil
		for k := range lister.Keys() {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		n, ok, err := readNode(ctx, kv, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[k] = n
		}
	}
	return out, nil
}

// readNode reads one node's record; false when it has none.
func readNode(ctx context.Context, kv jetstream.KeyValue, id string) (node.Node, bool, error) {
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return node.Node{}, false, nil
	}
	if err != nil {
		return node.Node{}, false, unavailable(err, "reading node %s", id)
	}
	var n node.Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		return node.Node{}, false, errs.Wrap(errs.Internal, err, "decoding node %s", id)
	}
	return n, true, nil
}

// enrolledDefault is the default runtime the operator set for the node's
// new servers (node.Enrollment.DefaultRuntime), or "".
func (r *Registry) enrolledDefault(ctx context.Context, id string) (string, error) {
	kv, err := r.js.KeyValue(ctx, subject.BucketEnrollments)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", nil
	}
	if err != nil {
		return "", unavailable(err, "opening bucket %s", subject.BucketEnrollments)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return "", nil
	}
	if err != nil {
		return "", unavailable(err, "reading enrollment of %s", id)
	}
	var en node.Enrollment
	if err := json.Unmarshal(e.Value(), &en); err != nil {
		return "", errs.Wrap(errs.Internal, err, "decoding enrollment of %s", id)
	}
	return en.DefaultRuntime, nil
}

// checkMove refuses, before anything changes, a move of cur to the
// runtime next names that cannot happen: one the node lacks, the one it
// already runs on, or any while the node's agent is down or stopped (it
// could not move the server, and a move left half-done would be its to
// finish at its next start).
func (r *Registry) checkMove(ctx context.Context, cur, next server.Server) error {
	if err := r.checkRuntime(ctx, next); err != nil || next.Runtime == "" {
		return err
	}
	if st := ReadStatus(ctx, r.status, cur); st.Serving() && st.Runtime == next.Runtime {
		return errs.Field("runtime", "server "+cur.Name+" already runs on "+next.Runtime)
	}
	records, err := r.nodeRecords(ctx, cur.Node)
	if err != nil {
		return err
	}
	n, seen := records[cur.Node]
	if state := agentState(n, seen, r.now()); state != node.AgentRunning {
		return &errs.Error{Class: errs.Conflict, Msg: "node " + cur.Node + " cannot move servers now", Fields: []errs.FieldError{{
			Field: "node", Rule: "node " + cur.Node + "'s agent is " + state + "; a server moves only while its node's agent runs",
		}}}
	}
	return nil
}

// checkRuntime refuses a server that names a runtime its node lacks,
// as the node's agent last reported (the nodes bucket). A node that has
// not reported is not checked: its agent reports such a server failed.
func (r *Registry) checkRuntime(ctx context.Context, s server.Server) error {
	if s.Runtime == "" {
		return nil
	}
	records, err := r.nodeRecords(ctx, s.Node)
	if err != nil {
		return err
	}
	n, ok := records[s.Node]
	if ok && !n.HasRuntime(s.Runtime) {
		return errs.Field("runtime", "node "+s.Node+" has no "+s.Runtime+" runtime (it has "+strings.Join(n.RuntimeKinds(), ", ")+")")
	}
	return nil
}
