package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// CutSessionsResponse is the reply to POST /users/{user}/sessions/cut:
// the sessions ended in all and what each node did.
type CutSessionsResponse struct {
	User   string    `json:"user"`
	Closed int       `json:"closed"`
	Nodes  []NodeCut `json:"nodes"`
}

// NodeCut is one node's part of a cut.
type NodeCut struct {
	Node   string `json:"node"`
	Closed int    `json:"closed"`
	// UnsupportedServers run an Xray that cannot end sessions (a stock
	// build): the user's connections there go on.
	UnsupportedServers []string `json:"unsupported_servers,omitempty"`
	// Skipped is "down" for a node that is not up: nothing of the user's
	// can be running through it that the node could end.
	Skipped string `json:"skipped,omitempty"`
	// Error is why an up node did not answer.
	Error string `json:"error,omitempty"`
}

// cutConcurrency bounds the nodes asked at once.
const cutConcurrency = 16

// cutSessions ends a user's open connections on every node that is up.
// It changes nothing about the user: one that is still allowed may connect
// again at once (to lock a user out, disable it; that cuts too).
func (s *Server) cutSessions(w http.ResponseWriter, r *http.Request) error {
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	ns, err := s.nodes(r.Context())
	if err != nil {
		return err
	}
	health, _ := s.nodeHealth(r.Context())
	now := time.Now()
	out := CutSessionsResponse{User: u.ID, Nodes: make([]NodeCut, len(ns))}
	timeout := min(s.cfg.UpstreamTimeout, 5*time.Second)
	var wg sync.WaitGroup
	sem := make(chan struct{}, cutConcurrency)
	for i, n := range ns {
		out.Nodes[i].Node = n.ID
		if !view(n, health, now).Healthy {
			out.Nodes[i].Skipped = "down"
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(r.Context(), timeout)
			defer cancel()
			reply, err := bus.Request[node.CutSessionsReply](ctx, s.env.NC, subject.AgentCmd(n.ID, node.CmdCutSessions), node.CutSessionsRequest{Users: []string{u.ID}})
			if err != nil {
				out.Nodes[i].Error = errs.Message(err)
				return
			}
			out.Nodes[i].Closed, out.Nodes[i].UnsupportedServers = reply.Closed, reply.Unsupported
		})
	}
	wg.Wait()
	for _, nc := range out.Nodes {
		out.Closed += nc.Closed
	}
	return writeJSON(w, http.StatusOK, out)
}
