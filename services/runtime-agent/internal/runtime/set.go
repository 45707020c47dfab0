package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Kinds lists every kind of runtime, in the order the agent prefers them
// when it chooses a default by itself.
var Kinds = []Kind{KindDocker, KindContainerd, KindProcess}

// ValidKind reports whether k names a kind of runtime.
func ValidKind(k Kind) bool { return slices.Contains(Kinds, k) }

// Set is every runtime one host offers, one per kind, and the default:
// the runtime a server that names none starts on. A workload is always
// looked for in all of them, so changing the default strands nothing.
type Set struct {
	def Kind
	rts []Runtime // in Kinds order
}

// NewSet makes a set of rts (one per kind) with def as the default, which
// must be among them.
func NewSet(def Kind, rts ...Runtime) (*Set, error) {
	s := &Set{def: def}
	for _, k := range Kinds {
		for _, rt := range rts {
			if rt.Kind() == k {
				if s.Get(k) != nil {
					return nil, errs.New(errs.Invalid, "two %s runtimes", k)
				}
				s.rts = append(s.rts, rt)
			}
		}
	}
	if len(s.rts) != len(rts) {
		return nil, errs.New(errs.Invalid, "a runtime of an unknown kind")
	}
	if s.Get(def) == nil {
		return nil, errs.Field("runtime", "default "+string(def)+" is not among the runtimes of this host ("+s.names()+")")
	}
	return s, nil
}

// Default is the runtime servers naming none start on.
func (s *Set) Default() Runtime { return s.Get(s.def) }

// DefaultKind is the kind of Default.
func (s *Set) DefaultKind() Kind { return s.def }

// Get returns the runtime of kind k, or nil when the host has none.
func (s *Set) Get(k Kind) Runtime {
	for _, rt := range s.rts {
		if rt.Kind() == k {
			return rt
		}
	}
	return nil
}

// Lookup returns the runtime of kind k, or an Invalid error naming the
// field "runtime" and the kinds the host has.
func (s *Set) Lookup(k Kind) (Runtime, error) {
	if rt := s.Get(k); rt != nil {
		return rt, nil
	}
	if !ValidKind(k) {
		return nil, errs.Field("runtime", "must be docker, containerd or process")
	}
	return nil, errs.Field("runtime", "this node has no "+string(k)+" runtime (it has "+s.names()+")")
}

// All returns the runtimes, default first, then in Kinds order.
func (s *Set) All() []Runtime {
	out := []Runtime{s.Default()}
	for _, rt := range s.rts {
		if rt.Kind() != s.def {
			out = append(out, rt)
		}
	}
	return out
}

func (s *Set) names() string {
	var n []string
	for _, rt := range s.rts {
		n = append(n, string(rt.Kind()))
	}
	return strings.Join(n, ", ")
}

// Close closes every runtime.
func (s *Set) Close() error {
	var list []error
	for _, rt := range s.rts {
		list = append(list, rt.Close())
	}
	return errors.Join(list...)
}

// The Set is itself a Runtime over every runtime of the host, for callers
// that look at workloads wherever they run (commands, stats, events):
// Kind, Version and Capabilities are the default's, Create makes the
// workload on the default, List lists every runtime's workloads, and an
// operation on one workload goes to the runtime that has it (the running
// one, then the default's, when two have a workload of that name, as
// during a hand-over).
var _ Runtime = (*Set)(nil)

// Kind is the default's kind.
func (s *Set) Kind() Kind { return s.def }

// Version is the default's version.
func (s *Set) Version(ctx context.Context) (string, error) { return s.Default().Version(ctx) }

// Capabilities are the default's.
func (s *Set) Capabilities() Capabilities { return s.Default().Capabilities() }

// EnsureImage ensures the image on the default runtime.
func (s *Set) EnsureImage(ctx context.Context, ref string, progress func(Progress)) error {
	return s.Default().EnsureImage(ctx, ref, progress)
}

// ImportImage imports into the default runtime.
func (s *Set) ImportImage(ctx context.Context, r io.Reader) ([]string, error) {
	return s.Default().ImportImage(ctx, r)
}

// Create creates the workload on the default runtime.
func (s *Set) Create(ctx context.Context, spec Spec) (string, error) {
	return s.Default().Create(ctx, spec)
}

// Holder returns the runtime that has the workload id (an id or a name)
// and what it says of it: the one where it runs, else the first that has
// it, default first; errs.NotFound when none has it.
func (s *Set) Holder(ctx context.Context, id string) (Runtime, Workload, error) {
	var (
		found   Runtime
		w       Workload
		lastErr error
	)
	for _, rt := range s.All() {
		got, err := rt.Inspect(ctx, id)
		if err != nil {
			if !errors.Is(err, errs.NotFound) {
				lastErr = err
			}
			continue
		}
		if got.State == StateRunning {
			return rt, got, nil
		}
		if found == nil {
			found, w = rt, got
		}
	}
	if found != nil {
		return found, w, nil
	}
	if lastErr != nil {
		return nil, Workload{}, lastErr
	}
	return nil, Workload{}, errs.New(errs.NotFound, "workload %s not found", id)
}

func (s *Set) holder(ctx context.Context, id string) (Runtime, error) {
	rt, _, err := s.Holder(ctx, id)
	return rt, err
}

// Start starts the workload where it is.
func (s *Set) Start(ctx context.Context, id string) error {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return err
	}
	return rt.Start(ctx, id)
}

// Stop stops the workload where it runs.
func (s *Set) Stop(ctx context.Context, id string, timeout time.Duration) error {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return err
	}
	return rt.Stop(ctx, id, timeout)
}

// Restart restarts the workload where it is.
func (s *Set) Restart(ctx context.Context, id string, timeout time.Duration) error {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return err
	}
	return rt.Restart(ctx, id, timeout)
}

// Remove removes the workload from the runtime that has it.
func (s *Set) Remove(ctx context.Context, id string) error {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return err
	}
	return rt.Remove(ctx, id)
}

// Inspect describes the workload where it is.
func (s *Set) Inspect(ctx context.Context, id string) (Workload, error) {
	_, w, err := s.Holder(ctx, id)
	return w, err
}

// List lists the workloads of every runtime; a runtime that cannot list
// fails the whole list.
func (s *Set) List(ctx context.Context) ([]Workload, error) {
	var out []Workload
	for _, rt := range s.All() {
		ws, err := rt.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing %s workloads: %w", rt.Kind(), err)
		}
		out = append(out, ws...)
	}
	return out, nil
}

// Logs streams the output of the workload where it is.
func (s *Set) Logs(ctx context.Context, id string, opts LogOptions) (*Stream[LogLine], error) {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return nil, err
	}
	return rt.Logs(ctx, id, opts)
}

// Stats samples the workload where it runs.
func (s *Set) Stats(ctx context.Context, id string) (Stats, error) {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return Stats{}, err
	}
	return rt.Stats(ctx, id)
}

// StreamStats samples the workload where it runs.
func (s *Set) StreamStats(ctx context.Context, id string, interval time.Duration) (*Stream[Stats], error) {
	rt, err := s.holder(ctx, id)
	if err != nil {
		return nil, err
	}
	return rt.StreamStats(ctx, id, interval)
}

// Events merges the events of every runtime. The stream ends when any of
// them ends (the caller subscribes again), with that one's error.
func (s *Set) Events(ctx context.Context) (*Stream[Event], error) {
	ctx, cancel := context.WithCancel(ctx)
	var subs []*Stream[Event]
	for _, rt := range s.All() {
		sub, err := rt.Events(ctx)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("following %s events: %w", rt.Kind(), err)
		}
		subs = append(subs, sub)
	}
	return Produce(ctx, 16, func(ctx context.Context, send func(Event) bool) error {
		defer cancel()
		merged := make(chan Event)
		ended := make(chan error, len(subs))
		for _, sub := range subs {
			go func() {
				for ev := range sub.C {
					select {
					case merged <- ev:
					case <-ctx.Done():
					}
				}
				ended <- sub.Err()
			}()
		}
		defer func() {
			cancel()
			for range subs {
				<-ended
			}
		}()
		for {
			select {
			case ev := <-merged:
				if !send(ev) {
					return nil
				}
			case err := <-ended:
				if err == nil {
					err = errs.New(errs.Unavailable, "a runtime's event stream ended")
				}
				subs = subs[1:] // one fewer to wait for
				return err
			case <-ctx.Done():
				return nil
			}
		}
	}), nil
}
