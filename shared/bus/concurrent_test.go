package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestServiceMetricsAreTrue drives a concurrent Service the way the users,
// servers and jobs services run: requests answered on goroutines of their
// own, after micro's handler returned. The request metrics it exports
// must count what happened: three requests that fail when their 50 ms
// timeout ends are three errors and at least 150 ms of processing, a
// request left unanswered is an error too, and a success is not.
func TestServiceMetricsAreTrue(t *testing.T) {
	const timeout = 50 * time.Millisecond
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	nc := s.Conn()
	ctx := ctxT(t)
	slow := bus.Endpoint(ctx, natstest.Logger(t), timeout, func(ctx context.Context, req struct{ Fail bool }) (string, error) {
		if !req.Fail {
			return "ok", nil
		}
		<-ctx.Done()
		return "", errs.Wrap(errs.Unavailable, ctx.Err(), "waiting")
	})
	mute := micro.HandlerFunc(func(micro.Request) {})
	svc, err := bus.Serve(nc, micro.Config{Name: "test", Version: "1.0.0"}, 8, []bus.ServiceEndpoint{
		{Name: "slow", Subject: "test.slow", Handler: slow},
		{Name: "mute", Subject: "test.mute", Handler: mute},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	reg := telemetry.NewRegistry()
	telemetry.NewRequests(reg).Add(svc)

	var wg sync.WaitGroup
	for _, fail := range []bool{true, true, true, false} {
		wg.Go(func() {
			got, err := bus.Request[string](ctx, nc, "test.slow", struct{ Fail bool }{fail})
			if fail != errors.Is(err, errs.Unavailable) || !fail && got != "ok" {
				t.Errorf("request (fail %v): %q, %v", fail, got, err)
			}
		})
	}
	wg.Wait()
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := bus.Request[string](rctx, nc, "test.mute", nil); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("unanswered request: %v", err)
	}
	// The unanswered request is counted once its handler has returned.
	waitfor.Cond(t, 10*time.Second, func() error {
		if endpointStats(svc.Stats(), "mute").NumRequests == 0 {
			return errors.New("the unanswered request is not counted")
		}
		return nil
	})
	st := svc.Stats()

	want := `
# HELP vpnfleet_nats_requests_total Requests handled by a NATS micro endpoint.
# TYPE vpnfleet_nats_requests_total counter
vpnfleet_nats_requests_total{endpoint="mute",service="test"} 1
vpnfleet_nats_requests_total{endpoint="slow",service="test"} 4
# HELP vpnfleet_nats_request_errors_total Requests a NATS micro endpoint answered with an error.
# TYPE vpnfleet_nats_request_errors_total counter
vpnfleet_nats_request_errors_total{endpoint="mute",service="test"} 1
vpnfleet_nats_request_errors_total{endpoint="slow",service="test"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vpnfleet_nats_requests_total", "vpnfleet_nats_request_errors_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var seconds float64
	for _, mf := range mfs {
		if mf.GetName() != "vpnfleet_nats_request_seconds_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" && l.GetValue() == "slow" {
					seconds = m.GetCounter().GetValue()
				}
			}
		}
	}
	if seconds < 3*timeout.Seconds() {
		t.Fatalf("slow endpoint: %.6fs of processing exported, want at least %.3fs", seconds, 3*timeout.Seconds())
	}
	if e := endpointStats(st, "slow"); e.LastError == "" || e.AverageProcessingTime < 3*timeout/4 {
		t.Fatalf("slow endpoint stats %+v", e)
	}
}

func endpointStats(st micro.Stats, name string) micro.EndpointStats {
	for _, e := range st.Endpoints {
		if e.Name == name {
			return *e
		}
	}
	return micro.EndpointStats{}
}
