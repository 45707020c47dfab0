package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// AckBody is the optional body of POST /api/v1/alerts/{alert}/ack.
type AckBody struct {
	Comment string `json:"comment,omitempty"`
}

// healthAsk bounds the gateway's own questions to the health service
// (node health for lists and subscriptions): short, since without an
// answer the heartbeat decides.
const healthAsk = time.Second

// nodeHealth asks the health service for every node's judged health; ok
// is false when it does not answer (or fails), and callers then judge by
// heartbeat age.
func (s *Server) nodeHealth(ctx context.Context) (map[string]event.NodeHealth, bool) {
	ctx, cancel := context.WithTimeout(ctx, min(healthAsk, s.cfg.UpstreamTimeout))
	defer cancel()
	reply, err := bus.Request[event.NodesReply](ctx, s.env.NC, subject.HealthCmd(subject.HealthNodes), event.NodesRequest{})
	if err != nil {
		return nil, false
	}
	out := make(map[string]event.NodeHealth, len(reply.Nodes))
	for _, h := range reply.Nodes {
		out[h.Node] = h
	}
	return out, true
}

// RangeQuery reads from, to (RFC 3339) and step (a Go duration) of the
// history routes.
func RangeQuery(q url.Values) (from, to time.Time, step time.Duration, err error) {
	var fe []errs.FieldError
	parse := func(name string) time.Time {
		v := q.Get(name)
		if v == "" {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339, v)
		if perr != nil {
			fe = append(fe, errs.FieldError{Field: name, Rule: "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"})
		}
		return t
	}
	from, to = parse("from"), parse("to")
	if v := q.Get("step"); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil || d <= 0 || d > 31*24*time.Hour {
			fe = append(fe, errs.FieldError{Field: "step", Rule: "must be a positive duration up to 744h, e.g. 1m, 1h"})
		}
		step = d
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		fe = append(fe, errs.FieldError{Field: "from", Rule: "must be before to"})
	}
	if len(fe) > 0 {
		return from, to, step, problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	return from, to, step, nil
}

func (s *Server) nodeStats(w http.ResponseWriter, r *http.Request) error {
	from, to, step, err := RangeQuery(r.URL.Query())
	if err != nil {
		return err
	}
	id := r.PathValue("node")
	if _, err := s.node(r.Context(), id); err != nil {
		return err
	}
	reply, err := call[event.StatsReply](s, r, subject.HealthCmd(subject.HealthStats), event.StatsRequest{Node: id, From: from, To: to, Step: step})
	if err != nil {
		return err
	}
	if reply.Points == nil {
		reply.Points = []event.NodePoint{}
	}
	return writeJSON(w, http.StatusOK, reply)
}

func (s *Server) userUsage(w http.ResponseWriter, r *http.Request) error {
	from, to, step, err := RangeQuery(r.URL.Query())
	if err != nil {
		return err
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	reply, err := call[event.UsageReply](s, r, subject.HealthCmd(subject.HealthUsage), event.UsageRequest{User: u.ID, From: from, To: to, Step: step})
	if err != nil {
		return err
	}
	if reply.Points == nil {
		reply.Points = []event.UserPoint{}
	}
	return writeJSON(w, http.StatusOK, reply)
}

var (
	alertStatuses   = []string{event.AlertFiringStatus, event.AlertResolvedStatus, "all"}
	alertSeverities = []string{event.SeverityCritical, event.SeverityWarning, event.SeverityInfo}
)

// AlertsQuery reads the query of GET /api/v1/alerts.
func AlertsQuery(q url.Values) (event.AlertsRequest, error) {
	var fe []errs.FieldError
	req := event.AlertsRequest{
		Status:   queryEnum(q, "status", alertStatuses, &fe),
		Severity: queryEnum(q, "severity", alertSeverities, &fe),
		Node:     q.Get("node"),
	}
	if req.Node != "" && !subject.ValidToken(req.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "must be a node id"})
	}
	if len(fe) > 0 {
		return req, problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	return req, nil
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) error {
	req, err := AlertsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	reply, err := call[event.AlertsReply](s, r, subject.HealthCmd(subject.HealthAlerts), req)
	if err != nil {
		return err
	}
	if reply.Alerts == nil {
		reply.Alerts = []event.Alert{}
	}
	return writeJSON(w, http.StatusOK, reply)
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) error {
	b, err := body[AckBody](s, r, true)
	if err != nil {
		return err
	}
	if len(b.Comment) > 1024 {
		return problem.Fields(errs.Invalid.String(), errs.FieldError{Field: "comment", Rule: "must be at most 1024 characters"})
	}
	id := r.PathValue("alert")
	tok := infoOf(r).tok
	a, err := call[event.Alert](s, r, subject.HealthCmd(subject.HealthAck), event.AckRequest{Fingerprint: id, By: fmt.Sprintf("%s (%s)", tok.Name, tok.ID), Comment: b.Comment})
	if errs.ClassOf(err) == errs.NotFound {
		p := problem.New(errs.NotFound, errs.NotFound.String(), fmt.Sprintf("no alert %s", id),
			"list alerts with `vpn alerts list` (GET /api/v1/alerts?status=all); an alert's id is its fingerprint")
		p.Errors = []errs.FieldError{{Field: "alert", Rule: "is not an alert fingerprint"}}
		return p
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}
