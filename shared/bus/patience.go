package bus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Start-up backoff: the first retry comes quickly (a cluster electing its
// leaders is ready within seconds), later ones at most every maxRetryWait,
// jittered by half so that replicas started together drift apart.
// An attempt is cut after attemptTimeout, so that one lost answer does
// not use up the whole start timeout.
const (
	firstRetryWait = 100 * time.Millisecond
	maxRetryWait   = 5 * time.Second
	attemptTimeout = time.Minute
)

// Patiently runs op (each attempt within a bounded time) until it succeeds, fails for good, or ctx ends, waiting
// with jittered exponential backoff between attempts and logging each
// failed one (what, attempt, the wait, the error). An error classified
// Invalid, Unauthorized or Forbidden, or a credential the server refused,
// is final: retrying it unchanged never helps. When ctx ends, the error
// is Unavailable with code errs.CodeNotReady, names what was tried and
// why ctx ended (its cause), and keeps the last attempt's error. Start-up uses it for the first connection and for provisioning,
// so services may start before their NATS cluster is ready.
func Patiently(ctx context.Context, log *slog.Logger, what string, op func(ctx context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = firstRetryWait, maxRetryWait, 0
	attempt := 0
	var last error
	err := backoff.RetryNotify(func() error {
		attempt++
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil && last != nil {
			// The attempt was cut by the deadline: keep the error that
			// says why the earlier ones failed.
			return backoff.Permanent(ctx.Err())
		}
		last = err
		if Final(err) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		log.Warn("retrying", logkey.Detail, what, logkey.Attempt, attempt, logkey.Delay, wait.String(), logkey.Err, err)
	})
	switch {
	case err == nil:
		if attempt > 1 {
			log.Info("succeeded after retrying", logkey.Detail, what, logkey.Attempt, attempt)
		}
		return nil
	case ctx.Err() != nil:
		if last == nil {
			last = ctx.Err()
		}
		return errs.WithCode(errs.Wrap(errs.Unavailable, last, "%s: gave up after %d attempts (%v)", what, attempt, context.Cause(ctx)), errs.CodeNotReady)
	}
	return err
}

// Final reports whether err is one that retrying unchanged cannot cure:
// bad input, a refused or missing credential, a forbidden action.
func Final(err error) bool {
	if Refused(err) {
		return true
	}
	var e *errs.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Class {
	case errs.Invalid, errs.Unauthorized, errs.Forbidden:
		return true
	}
	return false
}
