package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// usageParallelism bounds how many users of one record are written at once.
const usageParallelism = 8

// Limits bound what a usage record may claim.
type Limits struct {
	// MaxRate is the most bytes per second a node can move (all users
	// together); a record claiming more in its window is refused.
	MaxRate int64
}

// ErrImpossibleUsage: a record claims more traffic than its node could
// have moved in its window.
var ErrImpossibleUsage = errors.New("usage record claims more traffic than the node can move")

// CheckRecord validates a usage record received on subj (empty: not known)
// at now; a record that fails can never be applied, and is counted
// nowhere. The node must be the one whose credential published it (the
// subject names it, and a node may publish on its own only); its window
// (numbered by the wall clock in milliseconds, see the meter) and its
// bounds must lie within usage.MaxAge before now and usage.MaxSkew after
// it; and the bytes of all its users together must fit in its window at
// the node's maximum rate.
func CheckRecord(rec usage.Record, subj string, now time.Time, lim Limits) error {
	var fe fields
	if !subject.ValidToken(rec.Node) {
		fe.add("node", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	} else if from, ok := subject.ParseUsage(subj); subj != "" && (!ok || from != rec.Node) {
		fe.add("node", "must be the node that sent the record ("+from+")")
	}
	earliest, latest := now.Add(-usage.MaxAge), now.Add(usage.MaxSkew)
	switch {
	case rec.Window == 0:
		fe.add("window", "must be at least 1")
	case rec.Window > uint64(latest.UnixMilli()):
		fe.add("window", "must not lie in the future")
	}
	switch {
	case rec.Start.IsZero() || rec.End.IsZero():
		fe.add("end", "start and end must be set")
	case rec.End.Before(rec.Start):
		fe.add("end", "must not be before start")
	case rec.End.After(latest):
		fe.add("end", "must not lie in the future")
	case rec.Start.Before(earliest):
		fe.add("start", "must lie within the last "+usage.MaxAge.String())
	}
	var total int64
	for i, d := range rec.Users {
		if d.Uplink < 0 || d.Downlink < 0 {
			fe.add(fmt.Sprintf("users[%d]", i), "uplink and downlink must not be negative")
			break
		}
		total = satAdd(total, satAdd(d.Uplink, d.Downlink))
	}
	if err := fe.err(); err != nil {
		return err
	}
	if lim.MaxRate > 0 {
		// A second of slack: windows are cut on ticks, not on the byte.
		secs := rec.End.Sub(rec.Start).Seconds() + 1
		if float64(total) > secs*float64(lim.MaxRate) {
			return &errs.Error{Class: errs.Invalid, Msg: "refusing usage record", Err: ErrImpossibleUsage,
				Fields: []errs.FieldError{{Field: "users", Rule: fmt.Sprintf("%d bytes in %.0fs is more than %d bytes/s", total, secs-1, lim.MaxRate)}}}
		}
	}
	return nil
}

// satAdd adds without wrapping past the largest int64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// rejectUsage reports a refused record: logged, and an event on its
// node's subject (alert rules and `vpn events tail` see it).
func (r *Registry) rejectUsage(ctx context.Context, rec usage.Record, cause error) {
	r.log.Error("refusing usage record", logkey.Node, rec.Node, logkey.Detail, fmt.Sprintf("window %d", rec.Window), logkey.Err, cause)
	if !subject.ValidToken(rec.Node) {
		return
	}
	env, err := event.New(event.NodeUsageRejected, fmt.Sprintf("%s:%d:rejected", rec.Node, rec.Window), r.opts.Source,
		event.UsageRejected{Node: rec.Node, Window: rec.Window, Fields: errs.FieldsOf(cause)})
	if err == nil {
		_, err = bus.PublishEvent(ctx, r.js, subject.NodeEvent(rec.Node), env)
	}
	if err != nil {
		r.log.Warn("publishing a refused usage record", logkey.Node, rec.Node, logkey.Err, err)
	}
}

// ApplyUsage adds a record's deltas to its users' counters, each user at
// most once per (node, window) however often the record is delivered, and
// settles the users' status (first use, quota). Users that no longer exist
// are skipped. An error means some users may not be updated yet; applying
// the record again finishes them without counting the others twice.
func (r *Registry) ApplyUsage(ctx context.Context, rec usage.Record) error {
	subj := ""
	if m, ok := bus.MetaFrom(ctx); ok {
		subj = m.Subject
	}
	if err := CheckRecord(rec, subj, r.now(), r.opts.Usage); err != nil {
		r.rejectUsage(ctx, rec, err)
		return err
	}
	// One delta per user: a record listing a user twice counts both.
	merged := make(map[string]usage.UserDelta, len(rec.Users))
	order := make([]string, 0, len(rec.Users))
	for _, d := range rec.Users {
		m, seen := merged[d.User]
		if !seen {
			order = append(order, d.User)
			m.User = d.User
		}
		m.Uplink += d.Uplink
		m.Downlink += d.Downlink
		if d.LastSeen.After(m.LastSeen) {
			m.LastSeen = d.LastSeen
		}
		merged[d.User] = m
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(usageParallelism)
	for _, id := range order {
		if !ValidID(id) {
			continue // not a registry user (e.g. an agent's placeholder)
		}
		d := merged[id]
		g.Go(func() error {
			_, err := r.modify(gctx, id, 0, func(u *user.User, now time.Time) (change, error) {
				// Settled even when the window was counted before: a crash
				// between storing the counters and the status leaves the
				// status to this redelivery.
				applied, first := ApplyDelta(u, rec.Node, rec.Window, d, now)
				prev := u.Status
				if first {
					prev = user.StatusOnHold
				}
				o := Settle(u, now)
				switch {
				case o.Reason != "":
					return change{typ: event.UserStatusChanged, write: true, prev: prev, reason: o.Reason}, nil
				case first:
					return change{typ: event.UserStatusChanged, write: true, prev: prev, reason: user.ReasonFirstUse}, nil
				case o.Reset:
					return change{typ: event.UserTrafficReset, write: true, prev: prev}, nil
				}
				return change{write: applied}, nil
			})
			if errs.ClassOf(err) == errs.NotFound {
				r.log.Debug("skipping usage of unknown user", logkey.User, id, logkey.Node, rec.Node)
				return nil
			}
			if err != nil {
				return fmt.Errorf("applying usage window %d of node %s to user %s: %w", rec.Window, rec.Node, id, err)
			}
			return nil
		})
	}
	return g.Wait()
}
