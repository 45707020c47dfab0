package api

import (
	"net/http"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// NodeRuntimeRequest is the body of PUT /nodes/{node}/runtime: the runtime
// new servers on the node start on.
type NodeRuntimeRequest struct {
	Runtime string `json:"runtime"`
}

// runtimeStatus answers GET /runtimes: per node, its runtimes, default and
// the servers on each (the servers service composes it).
func (s *Server) runtimeStatus(w http.ResponseWriter, r *http.Request) error {
	n := r.URL.Query().Get("node")
	if n != "" && !subject.ValidToken(n) {
		return errs.Field("node", "must be a node id (see `vpn nodes list`)")
	}
	resp, err := call[node.RuntimesReply](s, r, subject.ServersCmd(subject.ServersRuntimes), node.RuntimesRequest{Node: n})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// setNodeRuntime answers PUT /nodes/{node}/runtime; the fleet service
// checks the runtime against what the node's agent reported.
func (s *Server) setNodeRuntime(w http.ResponseWriter, r *http.Request) error {
	req, err := body[NodeRuntimeRequest](s, r, false)
	if err != nil {
		return err
	}
	if req.Runtime == "" {
		return errs.Field("runtime", "is required: docker, containerd or process")
	}
	en, err := call[node.Enrollment](s, r, subject.FleetCmd(subject.FleetRuntime), node.RuntimeRequest{Node: r.PathValue("node"), Runtime: req.Runtime})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, en)
}
