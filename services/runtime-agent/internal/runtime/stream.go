package runtime

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Stream delivers values produced in the background: log lines, stats
// samples, events. C is closed when the producer stops, which happens when
// the context given to the producing call ends, when the source runs dry
// (a finished log, a stopped workload) or when it fails; Err then tells
// which. Cancel that context to stop a stream early: it is the only way to
// release its goroutine.
type Stream[T any] struct {
	C <-chan T

	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Err returns why the stream ended: nil when it ran dry or its context
// ended, the failure otherwise. It blocks until C is closed.
func (s *Stream[T]) Err() error {
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the producer has returned.
func (s *Stream[T]) Done() <-chan struct{} { return s.done }

// Produce runs produce in a goroutine and returns the Stream it feeds.
// produce hands values to send, which blocks until the reader takes them
// and returns false once ctx is done; produce must then return. A context
// error returned by produce after ctx ended is not reported by Err, since
// the caller asked for the end.
func Produce[T any](ctx context.Context, buffer int, produce func(ctx context.Context, send func(T) bool) error) *Stream[T] {
	c := make(chan T, buffer)
	s := &Stream[T]{C: c, done: make(chan struct{})}
	send := func(v T) bool {
		select {
		case c <- v:
			return true
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer close(s.done)
		defer close(c)
		err := produce(ctx, send)
		if err != nil && ctx.Err() != nil {
			err = nil
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}()
	return s
}

// PollStats builds a StreamStats out of a one-shot sampler: it samples
// every interval (default one second) until ctx ends or sample fails with
// errs.Conflict (the workload stopped), which ends the stream cleanly.
func PollStats(ctx context.Context, interval time.Duration, sample func(context.Context) (Stats, error)) *Stream[Stats] {
	if interval <= 0 {
		interval = time.Second
	}
	return Produce(ctx, 1, func(ctx context.Context, send func(Stats) bool) error {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s, err := sample(ctx)
			if errors.Is(err, errs.Conflict) {
				return nil
			}
			if err != nil {
				return err
			}
			if !send(s) {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
}
