package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
)

// TestTracingPostsToTheTracesPath checks OTEL_EXPORTER_OTLP_ENDPOINT as
// the OpenTelemetry conventions define it: the collector's base URL, to
// which OTLP/HTTP appends /v1/traces (a collector answers nothing on /).
// A bare host:port is a plain-HTTP base.
func TestTracingPostsToTheTracesPath(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	paths := make(chan string, 16)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths <- r.Method + " " + r.URL.Path
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	hostPort := strings.TrimPrefix(collector.URL, "http://")

	cases := []struct{ endpoint, want string }{
		{collector.URL, "POST /v1/traces"},
		{collector.URL + "/", "POST /v1/traces"},
		{collector.URL + "/otlp", "POST /otlp/v1/traces"},
		{collector.URL + "/otlp/", "POST /otlp/v1/traces"},
		{hostPort, "POST /v1/traces"},
	}
	for _, c := range cases {
		t.Run(c.endpoint, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			tp, stop, err := Tracing(ctx, c.endpoint, "test", "v0")
			if err != nil {
				t.Fatal(err)
			}
			_, span := tp.Tracer("test").Start(ctx, "one span")
			span.End()
			if err := stop(ctx); err != nil {
				t.Fatalf("flushing: %v", err)
			}
			select {
			case got := <-paths:
				if got != c.want {
					t.Fatalf("the exporter sent %s, want %s", got, c.want)
				}
			default:
				t.Fatal("the exporter sent nothing")
			}
		})
	}
}
