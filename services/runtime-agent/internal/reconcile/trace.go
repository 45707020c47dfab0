package reconcile

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracer names the spans of applying users to Xray.
var tracer = otel.Tracer("github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/reconcile")

// traceApply starts one span per user in ids whose latest change carried
// a trace: "apply user", a child of the request that changed the user, so
// one trace runs from the API call to the moment Xray holds the change.
func (r *Reconciler) traceApply(ctx context.Context, server string, ids map[string]struct{}) []trace.Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	var spans []trace.Span
	for id := range ids {
		tp := r.traces[id]
		if tp == "" {
			continue
		}
		parent := propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
		if !trace.SpanContextFromContext(parent).IsValid() {
			continue
		}
		_, sp := tracer.Start(parent, "apply user", trace.WithAttributes(
			attribute.String("vpn.user", id), attribute.String("vpn.server", server), attribute.String("vpn.node", r.cfg.Node)))
		spans = append(spans, sp)
	}
	return spans
}
