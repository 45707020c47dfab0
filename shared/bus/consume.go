package bus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Decision is what happens to a consumed message.
type Decision int

// The three ack decisions.
const (
	Ack   Decision = iota // handled; never deliver again
	Retry                 // transient failure; deliver again after a delay
	Term                  // can never succeed (undecodable, invalid); drop it
)

func (d Decision) String() string {
	return [...]string{"ack", "retry", "term"}[d]
}

// Decide is the one mapper from a handler's error to an ack decision: nil
// acks; Invalid terminates (retrying unchanged input cannot help); anything
// else is treated as transient and retried.
func Decide(err error) Decision {
	switch {
	case err == nil:
		return Ack
	case errs.ClassOf(err) == errs.Invalid:
		return Term
	}
	return Retry
}

// Meta describes the message being handled; handlers that need it (for an
// idempotency key, say) read it with MetaFrom.
type Meta struct {
	Subject   string
	MsgID     string
	StreamSeq uint64
	Delivered uint64
	Time      time.Time
}

type metaKey struct{}

// MetaFrom returns the metadata of the message whose handler ctx is.
func MetaFrom(ctx context.Context) (Meta, bool) {
	m, ok := ctx.Value(metaKey{}).(Meta)
	return m, ok
}

// ConsumeOptions tunes Consume. Zero values pick sensible defaults.
type ConsumeOptions struct {
	// Timeout bounds one handler call (default 30s).
	Timeout time.Duration
	// RetryBase and RetryMax bound the exponential redelivery delay
	// (defaults 200ms and 30s).
	RetryBase, RetryMax time.Duration
}

func (o ConsumeOptions) withDefaults() ConsumeOptions {
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.RetryBase <= 0 {
		o.RetryBase = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	return o
}

// retryDelay doubles from base with each delivery, capped at max.
func (o ConsumeOptions) retryDelay(delivered uint64) time.Duration {
	d := o.RetryBase
	for i := uint64(1); i < delivered && d < o.RetryMax; i++ {
		d *= 2
	}
	return min(d, o.RetryMax)
}

// Consume feeds every message of c, decoded from JSON into T, to h until ctx
// ends; then it drains in-flight messages and returns nil. Decoding errors
// terminate the message; h's error decides the rest (see Decide). Each
// failure is logged once, here.
func Consume[T any](ctx context.Context, c jetstream.Consumer, log *slog.Logger, opts ConsumeOptions, h func(context.Context, T) error) error {
	opts = opts.withDefaults()
	cc, err := c.Consume(func(m jetstream.Msg) {
		handleMsg(ctx, m, log, opts, h)
	})
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "starting consumer %s", c.CachedInfo().Name)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	return nil
}

func handleMsg[T any](ctx context.Context, m jetstream.Msg, log *slog.Logger, opts ConsumeOptions, h func(context.Context, T) error) {
	meta := Meta{Subject: m.Subject(), MsgID: m.Headers().Get("Nats-Msg-Id")}
	if md, err := m.Metadata(); err == nil {
		meta.StreamSeq, meta.Delivered, meta.Time = md.Sequence.Stream, md.NumDelivered, md.Timestamp
	}
	log = log.With(logkey.Subject, meta.Subject, logkey.MsgID, meta.MsgID, logkey.Seq, meta.StreamSeq)

	var v T
	err := json.Unmarshal(m.Data(), &v)
	if err != nil {
		err = errs.Wrap(errs.Invalid, err, "decoding message")
	} else {
		hctx, span := startSpan(Extract(context.WithoutCancel(ctx), m.Headers()), trace.SpanKindConsumer, "process", meta.Subject)
		hctx, cancel := context.WithTimeout(hctx, opts.Timeout)
		hctx = context.WithValue(hctx, metaKey{}, meta)
		err = h(hctx, v)
		cancel()
		endSpan(span, err)
	}

	var ackErr error
	switch Decide(err) {
	case Ack:
		ackErr = m.Ack()
	case Term:
		log.Error("terminating message", logkey.Err, err)
		ackErr = m.TermWithReason(errs.Message(err))
	case Retry:
		delay := opts.retryDelay(meta.Delivered)
		log.Warn("retrying message", logkey.Err, err, logkey.Attempt, meta.Delivered, logkey.Delay, delay)
		ackErr = m.NakWithDelay(delay)
	}
	if ackErr != nil && !errors.Is(ackErr, jetstream.ErrMsgAlreadyAckd) {
		log.Warn("acknowledging message", logkey.Err, ackErr)
	}
}
