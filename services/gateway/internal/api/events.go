package api

import (
	"net/http"
	"slices"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sse"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// EventsQuery reads the filters of GET /api/v1/events: kinds, and where
// to resume (Last-Event-ID, or ?since= for clients that cannot set it).
func EventsQuery(r *http.Request) (sse.Options, error) {
	var o sse.Options
	var fe []errs.FieldError
	if k := r.URL.Query().Get("kind"); k != "" {
		for kind := range strings.SplitSeq(k, ",") {
			kind = strings.TrimSpace(kind)
			if !slices.Contains(subject.EventKinds, kind) {
				fe = append(fe, errs.FieldError{Field: "kind", Rule: "each must be one of " + strings.Join(subject.EventKinds, ", ")})
				break
			}
			if !slices.Contains(o.Kinds, kind) {
				o.Kinds = append(o.Kinds, kind)
			}
		}
	}
	field, from := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if from == "" {
		field, from = "since", r.URL.Query().Get("since")
	}
	if from != "" {
		n, err := sse.ParseID(field, from)
		if err != nil {
			fe = append(fe, errs.FieldsOf(err)...)
		}
		o.After, o.Resume = n, true
	}
	if len(fe) > 0 {
		return o, problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	return o, nil
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	o, err := EventsQuery(r)
	if err != nil {
		return err
	}
	o.Ping = s.cfg.EventsPing
	c, err := sse.Open(r.Context(), s.env.JS, o)
	if err != nil {
		return err
	}
	return sse.Serve(r.Context(), w, c, o, s.stop)
}
