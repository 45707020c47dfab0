package api

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracer names the gateway's request spans: the root of the trace that
// follows a change through the registry, its events and the agents.
var tracer = otel.Tracer("github.com/vpnfleet/vpnfleet/services/gateway")

// startSpan starts the server span of r, continuing the caller's W3C trace
// context when r carries one. With no tracer provider installed it is a
// no-op. The span is named by the method until the router names the route
// (endSpan), and its url.path is redacted: a path may hold a credential.
func startSpan(r *http.Request) (context.Context, trace.Span) {
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	return tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", redactPath(r.URL.Path))))
}

// subPrefix starts the public subscription path, whose next segment is
// the subscription token: a credential.
const subPrefix = "/sub/"

// redactPath is path as spans and logs may carry it: the subscription
// token of /sub/{token} replaced by REDACTED.
func redactPath(path string) string {
	if strings.HasPrefix(path, subPrefix) {
		return subPrefix + "REDACTED"
	}
	return path
}

// endSpan names the span after the matched route (set by the router on r)
// and records the status.
func endSpan(span trace.Span, r *http.Request, status int) {
	if r.Pattern != "" {
		span.SetName(r.Pattern)
		span.SetAttributes(attribute.String("http.route", r.Pattern))
	}
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
