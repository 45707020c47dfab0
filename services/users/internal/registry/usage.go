package registry

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// usageParallelism bounds how many users of one record are written at once.
const usageParallelism = 8

// CheckRecord validates a usage record; a record that fails can never be
// applied.
func CheckRecord(rec usage.Record) error {
	var fe fields
	if !subject.ValidToken(rec.Node) {
		fe.add("node", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	}
	if rec.Window == 0 {
		fe.add("window", "must be at least 1")
	}
	for i, d := range rec.Users {
		if d.Uplink < 0 || d.Downlink < 0 {
			fe.add(fmt.Sprintf("users[%d]", i), "uplink and downlink must not be negative")
			break
		}
	}
	return fe.err()
}

// ApplyUsage adds a record's deltas to its users' counters, each user at
// most once per (node, window) however often the record is delivered, and
// settles the users' status (first use, quota). Users that no longer exist
// are skipped. An error means some users may not be updated yet; applying
// the record again finishes them without counting the others twice.
func (r *Registry) ApplyUsage(ctx context.Context, rec usage.Record) error {
	if err := CheckRecord(rec); err != nil {
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
				applied, first := ApplyDelta(u, rec.Node, rec.Window, d, now)
				if !applied {
					return change{}, nil
				}
				prev := user.StatusOnHold
				if !first {
					prev = u.Status
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
				return change{write: true}, nil
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
