package bus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the spans bus starts: one per publish, request,
// handled request and consumed message, so one trace follows a change from
// the HTTP request through every service that touches it.
const tracerName = "github.com/vpnfleet/vpnfleet/shared/bus"

// startSpan starts a span of kind on subj; with no tracer provider
// installed it is a no-op.
func startSpan(ctx context.Context, kind trace.SpanKind, op, subj string) (context.Context, trace.Span) {
	return otel.Tracer(tracerName).Start(ctx, op+" "+subj,
		trace.WithSpanKind(kind),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subj),
			attribute.String("messaging.operation.name", op),
		))
}

// endSpan records err on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// headerCarrier adapts nats.Header to the OpenTelemetry carrier interface so
// W3C trace context travels in message headers.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string { return nats.Header(c).Get(key) }
func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }
func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

var _ propagation.TextMapCarrier = headerCarrier(nil)

// Inject writes the trace context of ctx into h. With no tracer configured
// the global propagator is a no-op and this costs nothing.
func Inject(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(h))
}

// Extract returns ctx carrying the remote trace context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(h))
}
