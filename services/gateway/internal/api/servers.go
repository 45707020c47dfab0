package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// UpdateServerRequest is the body of PATCH /api/v1/servers/{server_id}.
type UpdateServerRequest struct {
	ExpectedRevision uint64                   `json:"expected_revision,omitempty"`
	Name             *string                  `json:"name,omitempty"`
	Inbounds         *[]server.InboundRequest `json:"inbounds,omitempty"`
	// Runtime moves the server to another runtime of its node ("":
	// inherit, staying where it runs).
	Runtime *string `json:"runtime,omitempty"`
}

// Limits of a server description checked at the gateway.
const maxInbounds = 16

// ValidateDeploy checks the shape of a deploy request.
func ValidateDeploy(req server.CreateRequest) error {
	var fe []errs.FieldError
	if !subject.ValidToken(req.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "must be a node id (see `vpn nodes list`)"})
	}
	if !validServerName(req.Name) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: serverNameRule})
	}
	fe = checkInbounds(fe, req.Inbounds)
	return errs.Fields(fe...)
}

const serverNameRule = "must be 1-64 characters of A-Z a-z 0-9 _ -"

func validServerName(s string) bool { return len(s) <= 64 && subject.ValidToken(s) }

func checkInbounds(fe []errs.FieldError, ins []server.InboundRequest) []errs.FieldError {
	if len(ins) == 0 || len(ins) > maxInbounds {
		return append(fe, errs.FieldError{Field: "inbounds", Rule: fmt.Sprintf("must list 1-%d inbounds", maxInbounds)})
	}
	for i, in := range ins {
		f := func(name string) string { return fmt.Sprintf("inbounds[%d].%s", i, name) }
		if !protocol.Known(in.Protocol) {
			fe = append(fe, errs.FieldError{Field: f("protocol"), Rule: "must be one of " + strings.Join(enum(protocol.Names()), ", ")})
		}
		if in.Port < 1 || in.Port > 65535 {
			fe = append(fe, errs.FieldError{Field: f("port"), Rule: "must be 1-65535"})
		}
		if in.Tag != "" && !subject.ValidToken(in.Tag) {
			fe = append(fe, errs.FieldError{Field: f("tag"), Rule: "must be 1-128 characters of A-Z a-z 0-9 _ -"})
		}
	}
	return fe
}

// resolveServer finds the server named by the {server_id} path value: an id,
// or a name unique across nodes.
func (s *Server) resolveServer(r *http.Request) (server.Server, error) {
	ref := r.PathValue("server_id")
	setTarget(r, "server", ref)
	var srv server.Server
	if isUUID(ref) {
		return call[server.Server](s, r, subject.ServersCmd(subject.ServersGet), server.GetRequest{ID: ref})
	}
	list, lerr := call[server.ListResponse](s, r, subject.ServersCmd(subject.ServersList), server.ListRequest{})
	if lerr != nil {
		return srv, lerr
	}
	var found []server.Server
	for _, c := range list.Servers {
		if c.Name == ref {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return srv, problem.New(errs.NotFound, errs.NotFound.String(), fmt.Sprintf("no server with id or name %q", ref),
			"list servers with `vpn servers list`")
	case 1:
		return found[0], nil
	}
	return srv, problem.New(errs.Conflict, errs.Conflict.String(), fmt.Sprintf("%d servers are named %q", len(found), ref),
		"name the server by its id (`vpn servers list` shows them)")
}

// presentServer hides a server's private keys from viewers.
func presentServer(r *http.Request, srv server.Server) server.Server {
	if role(r) != auth.Viewer {
		return srv
	}
	ins := make([]server.Inbound, len(srv.Inbounds))
	for i, in := range srv.Inbounds {
		if in.Reality != nil {
			re := *in.Reality
			re.PrivateKey = ""
			in.Reality = &re
		}
		if in.Shadowsocks != nil {
			ss := *in.Shadowsocks
			ss.ServerKey = ""
			in.Shadowsocks = &ss
		}
		ins[i] = in
	}
	srv.Inbounds = ins
	return srv
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) error {
	n := r.URL.Query().Get("node")
	if n != "" && !subject.ValidToken(n) {
		return problem.Fields(problem.CodeInvalidQuery, errs.FieldError{Field: "node", Rule: "must be a node id"})
	}
	resp, err := call[server.ListResponse](s, r, subject.ServersCmd(subject.ServersList), server.ListRequest{Node: n})
	if err != nil {
		return err
	}
	if resp.Servers == nil {
		resp.Servers = []server.Server{}
	}
	for i := range resp.Servers {
		resp.Servers[i] = presentServer(r, resp.Servers[i])
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) deployServer(w http.ResponseWriter, r *http.Request) error {
	req, err := body[server.CreateRequest](s, r, false)
	if err != nil {
		return err
	}
	if req.Name != "" {
		setTarget(r, "server", req.Name)
	}
	if err := ValidateDeploy(req); err != nil {
		return err
	}
	if _, err := s.node(r.Context(), req.Node); err != nil {
		if errors.Is(err, errs.NotFound) {
			return problem.Fields(errs.Invalid.String(), errs.FieldError{Field: "node", Rule: "must be a registered node (see `vpn nodes list`)"})
		}
		return err
	}
	srv, err := call[server.Server](s, r, subject.ServersCmd(subject.ServersCreate), req)
	if err != nil {
		return err
	}
	setTarget(r, "server", srv.ID)
	w.Header().Set("Location", "/api/v1/servers/"+srv.ID)
	return writeJSON(w, http.StatusCreated, srv)
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) error {
	srv, err := s.resolveServer(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, presentServer(r, srv))
}

func (s *Server) updateServer(w http.ResponseWriter, r *http.Request) error {
	b, err := body[UpdateServerRequest](s, r, false)
	if err != nil {
		return err
	}
	var fe []errs.FieldError
	if b.Name != nil && !validServerName(*b.Name) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: serverNameRule})
	}
	if b.Inbounds != nil {
		fe = checkInbounds(fe, *b.Inbounds)
	}
	if len(fe) > 0 {
		return errs.Fields(fe...)
	}
	srv, err := s.resolveServer(r)
	if err != nil {
		return err
	}
	out, err := call[server.Server](s, r, subject.ServersCmd(subject.ServersUpdate),
		server.UpdateRequest{ID: srv.ID, ExpectedRevision: b.ExpectedRevision, Name: b.Name, Inbounds: b.Inbounds, Runtime: b.Runtime})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) error {
	b, err := body[RevisionBody](s, r, true)
	if err != nil {
		return err
	}
	srv, err := s.resolveServer(r)
	if err != nil {
		return err
	}
	resp, err := call[server.DeleteResponse](s, r, subject.ServersCmd(subject.ServersDelete), server.DeleteRequest{ID: srv.ID, ExpectedRevision: b.ExpectedRevision})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) restartServer(w http.ResponseWriter, r *http.Request) error {
	srv, err := s.resolveServer(r)
	if err != nil {
		return err
	}
	wl, err := call[node.Workload](s, r, subject.AgentCmd(srv.Node, node.CmdRestart), node.WorkloadRequest{Workload: server.WorkloadName(srv.ID)})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, wl)
}

// NDJSON is the media type of followed logs: one JSON log line per line.
const NDJSON = "application/x-ndjson"

func (s *Server) serverLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var fe []errs.FieldError
	tail := queryInt(q, "tail", 0, 10_000, 200, &fe)
	follow := queryBool(q, "follow", &fe)
	stamps := queryBool(q, "timestamps", &fe)
	if len(fe) > 0 {
		return problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	srv, err := s.resolveServer(r)
	if err != nil {
		return err
	}
	req := node.LogsRequest{Workload: server.WorkloadName(srv.ID), Tail: tail, Timestamps: stamps}
	subj := subject.AgentCmd(srv.Node, node.CmdLogs)
	if !follow {
		resp, err := call[node.LogsReply](s, r, subj, req)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, resp)
	}

	// Followed: the agent sends chunks as requests to our inbox; answering
	// each one after it is written is the flow control.
	req.Follow, req.Deliver, req.MaxDuration = true, subject.LogDelivery(srv.Node, nuid.Next()), time.Hour
	chunks := make(chan *nats.Msg, 8)
	subn, err := s.env.NC.ChanSubscribe(req.Deliver, chunks)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "subscribing to %s", req.Deliver)
	}
	defer func() { _ = subn.Unsubscribe() }()
	if _, err := call[node.LogsReply](s, r, subj, req); err != nil {
		return err
	}
	w.Header().Set("Content-Type", NDJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-s.stop:
			return nil
		case m := <-chunks:
			var c node.LogChunk
			if err := json.Unmarshal(m.Data, &c); err != nil {
				return fmt.Errorf("decoding log chunk: %w", err)
			}
			for _, l := range c.Lines {
				if err := enc.Encode(l); err != nil {
					return nil // the client went away
				}
			}
			if c.Err != "" {
				_ = enc.Encode(map[string]string{"error": c.Err})
			}
			if fl != nil {
				fl.Flush()
			}
			_ = m.Respond(nil)
			if c.End {
				return nil
			}
		}
	}
}
