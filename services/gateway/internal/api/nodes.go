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
	// Enrollment is the state of the node's enrollment (pending, joined,
	// revoked), where its groups come from; empty when the node is not
	// enrolled or the fleet service did not answer. A node enrolled but
	// never seen has this state as its State, and no health.
	Enrollment string `json:"enrollment,omitempty"`
}

// Where a NodeView's health comes from.
const (
	HealthFromService   = "health"
	HealthFromHeartbeat = "heartbeat"
)

// NodeList is the reply of GET /api/v1/nodes.
type NodeList struct {
	Nodes []NodeView `json:"nodes"`
	// EnrollmentError says why groups and enrollment states are missing
	// (the fleet service did not answer).
	EnrollmentError string `json:"enrollment_error,omitempty"`
}

// NodeDetail is one node and, when its agent answers, its workloads.
type NodeDetail struct {
	NodeView
	Workloads  []node.Workload `json:"workloads,omitempty"`
	Buffered   int             `json:"buffered,omitempty"`
	AgentError string          `json:"agent_error,omitempty"`
	// EnrollmentError says why groups and enrollment state are missing.
	EnrollmentError string `json:"enrollment_error,omitempty"`
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

// listNodes lists every registered node, and every enrolled node that
// never registered (pending, most often), with groups from enrollments.
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	ns, err := s.nodes(r.Context())
	if err != nil {
		return err
	}
	ens, enErr := s.enrollments(r)
	health, _ := s.nodeHealth(r.Context())
	now := time.Now()
	out := NodeList{Nodes: make([]NodeView, 0, len(ns)+len(ens))}
	for _, n := range ns {
		out.Nodes = append(out.Nodes, enrolled(view(n, health, now), ens))
	}
	for _, en := range ens {
		if !slices.ContainsFunc(ns, func(n node.Node) bool { return n.ID == en.ID }) {
			out.Nodes = append(out.Nodes, unseen(en))
		}
	}
	slices.SortFunc(out.Nodes, func(a, b NodeView) int { return strings.Compare(a.ID, b.ID) })
	if enErr != nil {
		out.EnrollmentError = errs.Message(enErr)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("node")
	n, err := s.node(r.Context(), id)
	if err != nil && !errors.Is(err, errs.NotFound) {
		return err
	}
	ens, enErr := s.enrollments(r)
	if err != nil {
		en, ok := ens[id]
		if !ok {
			return err
		}
		return writeJSON(w, http.StatusOK, NodeDetail{NodeView: unseen(en)})
	}
	health, _ := s.nodeHealth(r.Context())
	out := NodeDetail{NodeView: enrolled(view(n, health, time.Now()), ens)}
	if enErr != nil {
		out.EnrollmentError = errs.Message(enErr)
	}
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
