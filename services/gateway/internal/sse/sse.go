// Package sse streams the EVENTS stream to HTTP clients as Server-Sent
// Events. Each event's id is its EVENTS stream sequence, so a client that
// reconnects with Last-Event-ID resumes right after the last event it saw,
// with nothing lost and nothing repeated.
package sse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// ContentType is the media type of an event stream.
const ContentType = "text/event-stream"

// Options selects what to stream.
type Options struct {
	// Kinds are event kinds (subject.Kind*); empty streams every kind.
	Kinds []string
	// Resume starts the stream after After, the last stream sequence the
	// client saw (0: from the first event kept). Without it the stream
	// holds only events published from now on.
	Resume bool
	After  uint64
	// Subjects, when set, replace Kinds: the stream holds the events on
	// these subjects only (one job's, say).
	Subjects []string
	// Last starts a stream that does not resume with the last event kept
	// on its subjects, so a client sees the current state at once.
	Last bool
	// EndAfter ends the stream after an event of this type (a job's
	// job.finished.v1: nothing follows it).
	EndAfter event.Type
	// Ping is how often a comment line keeps idle connections open.
	Ping time.Duration
}

// InactiveThreshold is how long JetStream keeps a stream's consumer after
// its last pull: a backstop for a gateway that dies without closing its
// streams (Close deletes the consumer at once).
const InactiveThreshold = time.Minute

// Stream is one client's read of EVENTS: an ordered consumer on the
// server, which Close deletes. Every opened Stream must be closed.
type Stream struct {
	js jetstream.JetStream
	c  jetstream.Consumer
	o  Options
}

// Open creates the ordered consumer a stream reads; its errors come before
// any byte is written, so the caller can still answer with a problem.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Stream, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy, InactiveThreshold: InactiveThreshold}
	for _, k := range o.Kinds {
		cfg.FilterSubjects = append(cfg.FilterSubjects, subject.EventsOfKind(k))
	}
	if len(o.Subjects) > 0 {
		cfg.FilterSubjects = o.Subjects
	}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{subject.AllEvents}
	}
	if o.Last {
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
	}
	if o.Resume {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = o.After + 1
	}
	c, err := js.OrderedConsumer(ctx, subject.StreamEvents, cfg)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening a consumer on %s", subject.StreamEvents)
	}
	return &Stream{js: js, c: c, o: o}, nil
}

// Close deletes the stream's consumer on the server, so a client that
// opens and drops streams leaves nothing behind. It runs under its own
// short deadline: the request's context has usually ended by now.
func (s *Stream) Close(ctx context.Context) error {
	info := s.c.CachedInfo()
	if info == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := s.js.DeleteConsumer(ctx, subject.StreamEvents, info.Name)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return errs.Wrap(errs.Unavailable, err, "deleting consumer %s on %s", info.Name, subject.StreamEvents)
	}
	return nil
}

// Serve writes the stream's events to w until ctx ends or stop is closed.
func (s *Stream) Serve(ctx context.Context, w http.ResponseWriter, stop <-chan struct{}) error {
	o := s.o
	fl, ok := w.(http.Flusher)
	if !ok {
		return errs.New(errs.Internal, "response writer cannot flush")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan jetstream.Msg)
	cc, err := s.c.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "consuming %s", subject.StreamEvents)
	}
	defer cc.Stop()

	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil {
		return nil
	}
	fl.Flush()

	ping := o.Ping
	if ping <= 0 {
		ping = 15 * time.Second
	}
	tick := time.NewTicker(ping)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
		case m := <-msgs:
			buf.Reset()
			Format(&buf, m)
			if _, err := w.Write(buf.Bytes()); err != nil {
				return nil // the client went away
			}
			if o.EndAfter != "" && m.Headers().Get(event.Header) == string(o.EndAfter) {
				fl.Flush()
				return nil
			}
		}
		fl.Flush()
	}
}

// Format writes one message as an event: id (stream sequence), event (the
// versioned type) and the envelope as data.
func Format(buf *bytes.Buffer, m jetstream.Msg) {
	if md, err := m.Metadata(); err == nil {
		buf.WriteString("id: " + strconv.FormatUint(md.Sequence.Stream, 10) + "\n")
	}
	if typ := m.Headers().Get(event.Header); typ != "" {
		buf.WriteString("event: " + typ + "\n")
	}
	for line := range bytes.SplitSeq(m.Data(), []byte("\n")) {
		buf.WriteString("data: ")
		buf.Write(line)
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
}

// MaxID is the largest id a stream resumes after. A stream starts at the
// sequence after its resume point, so the largest uint64 would wrap to 0;
// JetStream sequences stay far below this bound.
const MaxID = math.MaxInt64

// ParseID reads a resume point sent as field (Last-Event-ID, or ?since=
// for clients that cannot set the header): a stream sequence, 0-MaxID.
func ParseID(field, s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxID {
		return 0, errs.Field(field, "must be the id of an event: a stream sequence number, 0-"+strconv.FormatUint(MaxID, 10))
	}
	return n, nil
}
