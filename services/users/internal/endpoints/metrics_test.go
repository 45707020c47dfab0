package endpoints

import (
	"context"
	"errors"
	"fmt"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStatsCountErrorsAndProcessingTime: the users, servers and jobs
// services answer their requests on goroutines of their own, after
// micro's handler returned; the statistics the request metrics export
// must still count the requests that failed and the time they took
// (here each fails when its 50 ms timeout ends).
func TestStatsCountErrorsAndProcessingTime(t *testing.T) {
	const timeout = 50 * time.Millisecond
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	nc := s.Conn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slow := bus.Endpoint(ctx, natstest.Logger(t), timeout, func(ctx context.Context, req struct{ Fail bool }) (struct{}, error) {
		if !req.Fail {
			return struct{}{}, nil
		}
		<-ctx.Done()
		return struct{}{}, errs.Wrap(errs.Unavailable, ctx.Err(), "waiting")
	})
	svc, err := serve(nc, micro.Config{Name: "test", Version: Version}, func(name string) string { return "test." + name },
		[]endpoint{{"slow", slow}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()
	for _, fail := range []bool{true, false, true, true} {
		_, err := bus.Request[struct{}](ctx, nc, "test.slow", struct{ Fail bool }{fail})
		if fail != errors.Is(err, errs.Unavailable) {
			t.Fatalf("request (fail %v): %v", fail, err)
		}
	}
	// A request is recorded just after its reply is sent: the caller may
	// see the reply first, so wait for the last one to be counted.
	waitfor.Cond(t, 10*time.Second, func() error {
		st := svc.Stats()
		if len(st.Endpoints) != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		if e := st.Endpoints[0]; e.NumRequests != 4 {
			return fmt.Errorf("%d requests counted, want 4", e.NumRequests)
		}
		return nil
	})
	e := svc.Stats().Endpoints[0]
	if e.NumErrors != 3 || e.ProcessingTime < 3*timeout || e.LastError == "" {
		t.Fatalf("stats: %d requests, %d errors (last %q), %s processing; want 4, 3, at least %s",
			e.NumRequests, e.NumErrors, e.LastError, e.ProcessingTime, 3*timeout)
	}
}
