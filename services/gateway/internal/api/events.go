package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sse"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
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
	return s.stream(w, r, o)
}

// stream serves one event stream: it takes one of the caller's stream
// slots (429 too_many_streams when every one is held), opens the consumer,
// serves it, and deletes the consumer when the stream ends, however it
// ends, so streams that come and go leave no consumers behind.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, o sse.Options) error {
	release, ok := s.streams.Acquire(infoOf(r).tok.ID)
	if !ok {
		return problem.WithStatus(http.StatusTooManyRequests, errs.Unavailable, problem.CodeTooManyStreams,
			fmt.Sprintf("this token already holds %d open event streams, the most one token may", s.streams.Max()),
			"close one of this token's event streams (GET /api/v1/events or /api/v1/jobs/{job}/events) before opening another, or use another token")
	}
	defer release()
	st, err := sse.Open(r.Context(), s.env.JS, o)
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(r.Context()); err != nil {
			s.log.Warn("closing event stream", logkey.Path, redactPath(r.URL.Path), logkey.Err, err)
		}
	}()
	return st.Serve(r.Context(), w, s.stop)
}
