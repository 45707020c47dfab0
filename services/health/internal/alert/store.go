package alert

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Store keeps alerts in the alerts bucket and publishes their transitions
// on EVENTS. Every write is a compare-and-set on the entry's revision and
// every event id is derived from the stored entry, so replicas racing on
// one transition store it once and publish one message.
type Store struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	source string
}

// NewStore opens the alerts bucket; source names the publisher in events.
func NewStore(ctx context.Context, js jetstream.JetStream, source string) (*Store, error) {
	kv, err := js.KeyValue(ctx, subject.BucketAlerts)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketAlerts)
	}
	return &Store{kv: kv, js: js, source: source}, nil
}

// Apply stores a transition the evaluator decided and publishes it. A
// firing alert that is already firing in the store (another replica got
// there first) is adopted as stored; a resolution of an alert that is not
// firing is a no-op. It returns the alert as stored.
func (s *Store) Apply(ctx context.Context, a event.Alert) (event.Alert, error) {
	for {
		cur, rev, err := s.get(ctx, a.Fingerprint)
		if err != nil && !errors.Is(err, errs.NotFound) {
			return a, err
		}
		exists := err == nil
		var next event.Alert
		switch {
		case a.Status == event.AlertFiringStatus && exists && cur.Status == event.AlertFiringStatus,
			a.Status == event.AlertResolvedStatus && exists && cur.Status != event.AlertFiringStatus:
			// Already there: another replica (or an earlier run) stored it.
			if !cur.Published {
				return s.publish(ctx, cur, rev)
			}
			return cur, nil
		case a.Status == event.AlertResolvedStatus && !exists:
			return a, nil
		case a.Status == event.AlertFiringStatus:
			next = a
			next.Seq = cur.Seq + 1
			next.AckedBy, next.AckedAt, next.Comment = "", time.Time{}, ""
		default: // resolving the stored firing alert
			next = cur
			next.Status, next.EndsAt, next.Value, next.UpdatedAt = a.Status, a.EndsAt, a.Value, a.UpdatedAt
		}
		next.Published = false
		newRev, err := s.put(ctx, next, rev, exists)
		if errors.Is(err, errs.Conflict) {
			continue
		}
		if err != nil {
			return a, err
		}
		return s.publish(ctx, next, newRev)
	}
}

// publish stores the alert's event (id from the entry, so a retry or a
// racing replica is deduplicated) and marks the entry published.
func (s *Store) publish(ctx context.Context, a event.Alert, rev uint64) (event.Alert, error) {
	typ := event.AlertFiring
	if a.Status == event.AlertResolvedStatus {
		typ = event.AlertResolved
	}
	payload := a
	payload.Published = false
	env, err := event.New(typ, a.EventID(), s.source, payload)
	if err != nil {
		return a, err
	}
	env.Time = a.UpdatedAt
	if _, err := bus.PublishEvent(ctx, s.js, subject.AlertEvent(a.Fingerprint), env); err != nil {
		return a, err
	}
	a.Published = true
	if _, err := s.put(ctx, a, rev, true); err != nil && !errors.Is(err, errs.Conflict) {
		return a, err
	}
	return a, nil
}

func (s *Store) get(ctx context.Context, fp string) (event.Alert, uint64, error) {
	e, err := s.kv.Get(ctx, fp)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return event.Alert{}, 0, errs.New(errs.NotFound, "alert %s not found", fp)
	}
	if err != nil {
		return event.Alert{}, 0, errs.Wrap(errs.Unavailable, err, "reading alert %s", fp)
	}
	var a event.Alert
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return event.Alert{}, 0, errs.Wrap(errs.Internal, err, "decoding alert %s", fp)
	}
	return a, e.Revision(), nil
}

func (s *Store) put(ctx context.Context, a event.Alert, rev uint64, exists bool) (uint64, error) {
	data, err := json.Marshal(a)
	if err != nil {
		return 0, errs.Wrap(errs.Internal, err, "encoding alert %s", a.Fingerprint)
	}
	var newRev uint64
	if exists {
		newRev, err = s.kv.Update(ctx, a.Fingerprint, data, rev)
	} else {
		newRev, err = s.kv.Create(ctx, a.Fingerprint, data)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || isWrongSeq(err) {
		return 0, errs.Wrap(errs.Conflict, err, "alert %s changed meanwhile", a.Fingerprint)
	}
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "storing alert %s", a.Fingerprint)
	}
	return newRev, nil
}

func isWrongSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// All returns every stored alert.
func (s *Store) All(ctx context.Context) ([]event.Alert, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "listing alerts")
	}
	var out []event.Alert
	for k := range lister.Keys() {
		a, _, err := s.get(ctx, k)
		if errors.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// List answers vpn.health.alerts.
func (s *Store) List(ctx context.Context, req event.AlertsRequest) (event.AlertsReply, error) {
	switch req.Status {
	case "":
		req.Status = event.AlertFiringStatus
	case event.AlertFiringStatus, event.AlertResolvedStatus, "all":
	default:
		return event.AlertsReply{}, errs.Field("status", "must be firing, resolved or all")
	}
	if req.Severity != "" && !slices.Contains(severities, req.Severity) {
		return event.AlertsReply{}, errs.Field("severity", "must be critical, warning or info")
	}
	all, err := s.All(ctx)
	if err != nil {
		return event.AlertsReply{}, err
	}
	out := []event.Alert{}
	for _, a := range all {
		if (req.Status != "all" && a.Status != req.Status) ||
			(req.Severity != "" && a.Severity != req.Severity) ||
			(req.Node != "" && a.Labels["node"] != req.Node) {
			continue
		}
		a.Published = false
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b event.Alert) int {
		if c := b.StartsAt.Compare(a.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.Fingerprint, b.Fingerprint)
	})
	return event.AlertsReply{Alerts: out}, nil
}

// Ack records an operator's acknowledgement on an alert.
func (s *Store) Ack(ctx context.Context, req event.AckRequest) (event.Alert, error) {
	var fe []errs.FieldError
	if !subject.ValidToken(req.Fingerprint) {
		fe = append(fe, errs.FieldError{Field: "fingerprint", Rule: "must be an alert fingerprint"})
	}
	if req.By == "" || len(req.By) > 128 {
		fe = append(fe, errs.FieldError{Field: "by", Rule: "must be 1-128 characters"})
	}
	if len(req.Comment) > 1024 {
		fe = append(fe, errs.FieldError{Field: "comment", Rule: "must be at most 1024 characters"})
	}
	if err := errs.Fields(fe...); err != nil {
		return event.Alert{}, err
	}
	for {
		a, rev, err := s.get(ctx, req.Fingerprint)
		if err != nil {
			return event.Alert{}, err
		}
		a.AckedBy, a.AckedAt, a.Comment = req.By, time.Now().UTC(), req.Comment
		if _, err := s.put(ctx, a, rev, true); errors.Is(err, errs.Conflict) {
			continue
		} else if err != nil {
			return event.Alert{}, err
		}
		a.Published = false
		return a, nil
	}
}

// Prune deletes resolved alerts that ended before cutoff.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) error {
	all, err := s.All(ctx)
	if err != nil {
		return err
	}
	for _, a := range all {
		if a.Status == event.AlertResolvedStatus && a.Published && a.EndsAt.Before(cutoff) {
			_ = s.kv.Purge(ctx, a.Fingerprint)
		}
	}
	return nil
}
