// Package telemetry sets up the three signals every binary emits: JSON logs
// through log/slog, Prometheus metrics on its own registry, and OpenTelemetry
// traces exported over OTLP when an endpoint is configured (and a no-op
// tracer, at no cost, when not).
package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	goruntime "runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// NewLogger returns a JSON logger at the named level (debug, info, warn,
// error) tagged with the service name. Each key appears once in a line:
// narrowing the logger again with a key it has (log.With(logkey.Component,
// ...)) replaces the value.
func NewLogger(w io.Writer, level, service string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, errs.Field("log_level", "must be one of debug, info, warn, error")
	}
	h := &onceHandler{inner: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})}
	return slog.New(h).With(logkey.Service, service), nil
}

// BuildInfoName is the gauge, always 1, whose labels say which build a
// binary runs (version, go_version): dashboards join on it and alerts can
// spot a fleet running mixed versions.
const BuildInfoName = "vpnfleet_build_info"

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors and vpnfleet_build_info; each binary registers its own metrics
// on it.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        BuildInfoName,
		Help:        "Always 1; its labels are the build's version and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version.Version, "go_version": goruntime.Version()},
	})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

// MetricsHandler serves reg in the Prometheus exposition format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// TracesPath is the OTLP/HTTP path of traces, appended to a base endpoint.
const TracesPath = "/v1/traces"

// Tracing installs the W3C trace-context propagator and, with an endpoint,
// a global tracer provider exporting spans over OTLP/HTTP. endpoint is
// OTEL_EXPORTER_OTLP_ENDPOINT as the OpenTelemetry conventions define it:
// the collector's base URL (http://collector:4318, or with a path prefix),
// to which TracesPath is appended; a bare host:port is a plain-HTTP base.
// With an empty endpoint it leaves the global provider alone: by default
// that is a no-op that costs nothing (and a test may have installed an
// in-memory one). The returned func flushes and stops the exporter.
func Tracing(ctx context.Context, endpoint, service, version string) (trace.TracerProvider, func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	if endpoint == "" {
		return otel.GetTracerProvider(), func(context.Context) error { return nil }, nil
	}
	opts, err := exporterOptions(endpoint)
	if err != nil {
		return nil, nil, err
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("creating otlp exporter for %s: %w", endpoint, err)
	}
	res := sdkresource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp, tp.Shutdown, nil
}

// exporterOptions turns a base endpoint into the exporter's traces URL.
func exporterOptions(endpoint string) ([]otlptracehttp.Option, error) {
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		return []otlptracehttp.Option{otlptracehttp.WithEndpoint(endpoint), otlptracehttp.WithInsecure(), otlptracehttp.WithURLPath(TracesPath)}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, errs.Field("otlp_endpoint", "must be a URL like http://collector:4318 or a host:port")
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + TracesPath
	return []otlptracehttp.Option{otlptracehttp.WithEndpointURL(u.String())}, nil
}
