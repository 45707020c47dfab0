package history

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// MaxPoints bounds the points of one query reply.
const MaxPoints = 2000

// Range is a validated query range.
type Range struct {
	From, To   time.Time
	Step       time.Duration
	Resolution string
	Stream     string
	native     time.Duration
}

// Plan validates a query and picks the resolution: coarse for steps of at
// least the coarse step or ranges reaching past the fine retention, else
// fine. now is the query time.
func (c Config) Plan(from, to time.Time, step time.Duration, now time.Time) (Range, error) {
	if to.IsZero() {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-time.Hour)
	}
	var fe []errs.FieldError
	if !from.Before(to) {
		fe = append(fe, errs.FieldError{Field: "from", Rule: "must be before to"})
	}
	if step < 0 {
		fe = append(fe, errs.FieldError{Field: "step", Rule: "must not be negative"})
	}
	if err := errs.Fields(fe...); err != nil {
		return Range{}, err
	}
	r := Range{From: from, To: to, Resolution: subject.ResolutionFine, Stream: subject.StreamHistoryFine, native: c.Fine}
	if step >= c.Coarse || from.Before(now.Add(-subject.HistoryFineRetention)) {
		r.Resolution, r.Stream, r.native = subject.ResolutionCoarse, subject.StreamHistoryCoarse, c.Coarse
	}
	if step < r.native {
		step = r.native
	}
	r.Step = step.Truncate(r.native)
	if n := to.Sub(from) / r.Step; n > MaxPoints {
		return Range{}, errs.Field("step", "the range holds more than 2000 steps; ask for a larger step")
	}
	r.From = from.Truncate(r.native)
	return r, nil
}

// read returns the stored points of subj whose start lies in [r.From,
// r.To), in order.
func read[P any](ctx context.Context, js jetstream.JetStream, r Range, subj string, start func(P) time.Time) ([]P, error) {
	cons, err := js.OrderedConsumer(ctx, r.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		// A point is written after its step ends; start a step early.
		OptStartTime: ptr(r.From),
	})
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading %s", subj)
	}
	var out []P
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "reading %s", subj)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var p P
			if err := json.Unmarshal(m.Data(), &p); err != nil {
				continue // a point we cannot read is a gap, not a failed query
			}
			at := start(p)
			if at.Before(r.From) || !at.Before(r.To) {
				continue
			}
			out = append(out, p)
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				n = 0
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, errs.Wrap(errs.Unavailable, err, "reading %s", subj)
		}
		if n == 0 {
			return out, nil
		}
	}
}

func ptr[T any](v T) *T { return &v }

// NodePoints reads a node's points in r, re-bucketed to r.Step.
func NodePoints(ctx context.Context, js jetstream.JetStream, r Range, nodeID string) ([]event.NodePoint, error) {
	pts, err := read(ctx, js, r, subject.NodeHistory(r.Resolution, nodeID), func(p event.NodePoint) time.Time { return p.Start })
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(pts, func(a, b event.NodePoint) int { return a.Start.Compare(b.Start) })
	out := []event.NodePoint{}
	for _, p := range pts {
		start := r.From.Add(p.Start.Sub(r.From).Truncate(r.Step))
		if n := len(out); n > 0 && out[n-1].Start.Equal(start) {
			Merge(&out[n-1], p)
			continue
		}
		q := event.NodePoint{Node: p.Node, Start: start, Step: r.Step}
		Merge(&q, p)
		out = append(out, q)
	}
	return out, nil
}

// UserPoints reads a user's traffic points in r, re-bucketed to r.Step.
func UserPoints(ctx context.Context, js jetstream.JetStream, r Range, user string) ([]event.UserPoint, error) {
	pts, err := read(ctx, js, r, subject.UserHistory(r.Resolution, user), func(p event.UserPoint) time.Time { return p.Start })
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(pts, func(a, b event.UserPoint) int { return a.Start.Compare(b.Start) })
	out := []event.UserPoint{}
	for _, p := range pts {
		start := r.From.Add(p.Start.Sub(r.From).Truncate(r.Step))
		if n := len(out); n > 0 && out[n-1].Start.Equal(start) {
			out[n-1].Uplink += p.Uplink
			out[n-1].Downlink += p.Downlink
			continue
		}
		out = append(out, event.UserPoint{User: p.User, Start: start, Step: r.Step, Uplink: p.Uplink, Downlink: p.Downlink})
	}
	return out, nil
}
