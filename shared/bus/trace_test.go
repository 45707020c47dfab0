package bus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestOneTraceAcrossRequestEventAndConsumer follows one change: a client
// request, the service handling it, the message it publishes, and the
// consumer handling that message. Every span carries the client's trace id.
func TestOneTraceAcrossRequestEventAndConsumer(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(noop.NewTracerProvider())
	})

	s := natstest.Start(t)
	nc := s.Conn()
	js := s.JetStream()
	ctx := ctxT(t)

	srv, err := micro.AddService(nc, micro.Config{Name: "traced", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	h := bus.Endpoint(ctx, natstest.Logger(t), time.Second, func(ctx context.Context, r rec) (rec, error) {
		_, err := bus.Publish(ctx, js, subject.Usage("n1"), "traced-1", r)
		return r, err
	})
	if err := srv.AddEndpoint("do", h, micro.WithEndpointSubject("test.traced")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, subject.StreamUsage, jetstream.ConsumerConfig{Durable: "traced", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan string, 1)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- bus.Consume(runCtx, cons, natstest.Logger(t), bus.ConsumeOptions{}, func(ctx context.Context, _ rec) error {
			handled <- "ok"
			return nil
		})
	}()

	rootCtx, root := tp.Tracer("test").Start(ctx, "client")
	if _, err := bus.Request[rec](rootCtx, nc, "test.traced", rec{N: 1}); err != nil {
		t.Fatal(err)
	}
	root.End()
	<-handled
	stop()
	<-done

	want := root.SpanContext().TraceID()
	waitfor.Cond(t, 5*time.Second, func() error {
		kinds := map[string]bool{}
		for _, sp := range spans.Ended() {
			if sp.SpanContext().TraceID() == want {
				kinds[sp.SpanKind().String()] = true
			}
		}
		for _, k := range []string{"client", "server", "producer", "consumer"} {
			if !kinds[k] {
				return fmt.Errorf("no %s span in the client's trace (have %v)", k, kinds)
			}
		}
		return nil
	})
}
