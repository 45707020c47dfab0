package api

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// AddNodeRequest is the body of POST /api/v1/nodes: the node to enroll,
// the groups the operator puts it in, and how long its join token works.
type AddNodeRequest struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups,omitempty"`
	// TTL is a Go duration ("1h", "30m"); empty is the fleet service's
	// default (an hour).
	TTL string `json:"ttl,omitempty"`
}

// NodeGroupsRequest is the body of PUT /api/v1/nodes/{node}/groups: the
// node's groups from now on ([] for none).
type NodeGroupsRequest struct {
	Groups []string `json:"groups"`
}

// The fleet service (run by the users service) owns enrollments and
// checks every rule about them; these handlers check the request's shape,
// ask it and answer what it says.

func (s *Server) addNode(w http.ResponseWriter, r *http.Request) error {
	req, err := body[AddNodeRequest](s, r, false)
	if err != nil {
		return err
	}
	setTarget(r, "node", req.Name)
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			return errs.Field("ttl", "must be a duration like 1h or 30m")
		}
	}
	resp, err := call[node.AddResponse](s, r, subject.FleetCmd(subject.FleetAdd), node.AddRequest{Node: req.Name, Groups: req.Groups, TTL: ttl})
	if err != nil {
		// The fleet service names the node "node"; this body calls it "name".
		return renameField(err, "node", "name")
	}
	resp.InstallCommand = installCommand(s.publicBase(r), resp.Token)
	w.Header().Set("Location", "/api/v1/nodes/"+url.PathEscape(resp.Enrollment.ID))
	return writeJSON(w, http.StatusCreated, resp)
}

func (s *Server) listEnrollments(w http.ResponseWriter, r *http.Request) error {
	resp, err := call[node.EnrollmentsResponse](s, r, subject.FleetCmd(subject.FleetList), struct{}{})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) setNodeGroups(w http.ResponseWriter, r *http.Request) error {
	req, err := body[NodeGroupsRequest](s, r, false)
	if err != nil {
		return err
	}
	if req.Groups == nil {
		return errs.Field("groups", "is required: the node's groups ([] for none)")
	}
	en, err := call[node.Enrollment](s, r, subject.FleetCmd(subject.FleetGroups), node.GroupsRequest{Node: r.PathValue("node"), Groups: req.Groups})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, en)
}

func (s *Server) revokeNode(w http.ResponseWriter, r *http.Request) error {
	en, err := call[node.Enrollment](s, r, subject.FleetCmd(subject.FleetRevoke), node.NodeRequest{Node: r.PathValue("node")})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, en)
}

// renameField returns err with its field errors named from renamed to,
// keeping class, code, message and the other fields: a service's name for
// a field the request body spells otherwise.
func renameField(err error, from, to string) error {
	var e *errs.Error
	if !errors.As(err, &e) || !slices.ContainsFunc(e.Fields, func(f errs.FieldError) bool { return f.Field == from }) {
		return err
	}
	c := *e
	c.Fields = slices.Clone(e.Fields)
	for i := range c.Fields {
		if c.Fields[i].Field == from {
			c.Fields[i].Field = to
		}
	}
	return &c
}

// enrollments asks the fleet service for every enrollment, by node. The
// node routes use it for groups and enrollment state; when it fails they
// still list registrations, and say why the rest is missing.
func (s *Server) enrollments(r *http.Request) (map[string]node.Enrollment, error) {
	resp, err := callWithin[node.EnrollmentsResponse](s, r, subject.FleetCmd(subject.FleetList), struct{}{}, min(healthAsk, s.cfg.UpstreamTimeout))
	if err != nil {
		return nil, err
	}
	out := make(map[string]node.Enrollment, len(resp.Enrollments))
	for _, en := range resp.Enrollments {
		out[en.ID] = en
	}
	return out, nil
}

// enrolled sets a node's groups and enrollment state from its enrollment:
// groups are the operator's decision, never what an agent says of itself,
// so a node without a known enrollment shows none.
func enrolled(v NodeView, ens map[string]node.Enrollment) NodeView {
	en, ok := ens[v.ID]
	v.Groups, v.Enrollment = nil, ""
	if ok {
		v.Groups, v.Enrollment = en.Groups, en.State
	}
	return v
}

// unseen is the view of a node that is enrolled but has never registered
// (its agent has not started, or not joined yet): its state is its
// enrollment's, and there is no heartbeat to judge.
func unseen(en node.Enrollment) NodeView {
	return NodeView{Node: node.Node{ID: en.ID, Groups: en.Groups, State: en.State}, Enrollment: en.State}
}
