package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sub"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// NodeView is a node's registration and its health as the gateway sees it:
// the health service's judgement (healthy, degraded, down, with the
// reason) when it answers and has judged the node, else the heartbeat's
// age alone (HealthFrom says which). Healthy nodes (degraded ones too:
// they still serve) are listed in links and subscriptions.
type NodeView struct {
	node.Node
	Healthy             bool    `json:"healthy"`
	HeartbeatAgeSeconds float64 `json:"heartbeat_age_seconds"`
	Health              string  `json:"health,omitempty"`
	HealthReason        string  `json:"health_reason,omitempty"`
	HealthFrom          string  `json:"health_from"`
}

// Where a NodeView's health comes from.
const (
	HealthFromService   = "health"
	HealthFromHeartbeat = "heartbeat"
)

// NodeList is the reply of GET /api/v1/nodes.
type NodeList struct {
	Nodes []NodeView `json:"nodes"`
}

// NodeDetail is one node and, when its agent answers, its workloads.
type NodeDetail struct {
	NodeView
	Workloads  []node.Workload `json:"workloads,omitempty"`
	Buffered   int             `json:"buffered,omitempty"`
	AgentError string          `json:"agent_error,omitempty"`
}

func view(n node.Node, health map[string]event.NodeHealth, now time.Time) NodeView {
	v := NodeView{Node: n, Healthy: sub.Healthy(n, now), HeartbeatAgeSeconds: now.Sub(n.HeartbeatAt).Round(time.Millisecond).Seconds(), HealthFrom: HealthFromHeartbeat}
	if h, ok := health[n.ID]; ok && h.State != "" {
		v.Health, v.HealthReason, v.HealthFrom = h.State, h.Reason, HealthFromService
		v.Healthy = h.State != event.HealthDown
	}
	return v
}

// nodesBucket opens the nodes bucket (a lookup, cached once it succeeds).
func (s *Server) nodesBucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.kvMu.Lock()
	defer s.kvMu.Unlock()
	if s.nodesKV != nil {
		return s.nodesKV, nil
	}
	kv, err := s.env.JS.KeyValue(ctx, subject.BucketNodes)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketNodes)
	}
	s.nodesKV = kv
	return kv, nil
}

// nodes returns every registered node, sorted by id.
func (s *Server) nodes(ctx context.Context) ([]node.Node, error) {
	kv, err := s.nodesBucket(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "listing nodes")
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k)
	}
	out := []node.Node{}
	for _, id := range ids {
		n, err := s.node(ctx, id)
		if errors.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b node.Node) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// node returns one node's registration.
func (s *Server) node(ctx context.Context, id string) (node.Node, error) {
	kv, err := s.nodesBucket(ctx)
	if err != nil {
		return node.Node{}, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return node.Node{}, errs.New(errs.NotFound, "node %s is not registered", id)
	}
	if err != nil {
		return node.Node{}, errs.Wrap(errs.Unavailable, err, "reading node %s", id)
	}
	var n node.Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		return node.Node{}, fmt.Errorf("decoding node %s: %w", id, err)
	}
	return n, nil
}

// healthyNodes returns the ids of healthy nodes (never nil: an empty list
// means no node may be listed).
func (s *Server) healthyNodes(ctx context.Context) ([]string, error) {
	ns, err := s.nodes(ctx)
	if err != nil {
		return nil, err
	}
	health, _ := s.nodeHealth(ctx)
	now := time.Now()
	out := []string{}
	for _, n := range ns {
		if view(n, health, now).Healthy {
			out = append(out, n.ID)
		}
	}
	return out, nil
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.nodes(r.Context())
	if err != nil {
		return err
	}
	health, _ := s.nodeHealth(r.Context())
	now := time.Now()
	out := NodeList{Nodes: make([]NodeView, len(ns))}
	for i, n := range ns {
		out.Nodes[i] = view(n, health, now)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("node")
	n, err := s.node(r.Context(), id)
	if err != nil {
		return err
	}
	health, _ := s.nodeHealth(r.Context())
	out := NodeDetail{NodeView: view(n, health, time.Now())}
	if out.Healthy {
		ctx, cancel := context.WithTimeout(r.Context(), min(s.cfg.UpstreamTimeout, 3*time.Second))
		st, err := bus.Request[node.StatusReply](ctx, s.env.NC, subject.AgentCmd(id, node.CmdStatus), struct{}{})
		cancel()
		if err != nil {
			out.AgentError = errs.Message(err)
		} else {
			out.Workloads, out.Buffered = st.Workloads, st.Buffered
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
