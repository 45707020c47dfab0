package reconcile

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// FollowRuntime passes the runtime's events to Observe until ctx ends,
// subscribing again with backoff when the stream breaks. Each broken
// stream is followed by a drift check of every server, since a start may
// have been missed.
func (r *Reconciler) FollowRuntime(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.MaxElapsedTime = 0
	bo.MaxInterval = 10 * time.Second
	bo.Reset()
	for ctx.Err() == nil {
		s, err := r.rts.Events(ctx)
		if err == nil {
			for ev := range s.C {
				bo.Reset()
				r.Observe(ev)
			}
			err = s.Err()
		}
		if ctx.Err() != nil {
			return nil
		}
		r.resyncAll()
		d := bo.NextBackOff()
		r.log.Warn("runtime event stream ended, resubscribing", logkey.Err, err, logkey.Delay, d)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return nil
}
