package telemetry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

func TestRequestsExportsMicroStats(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	nc := s.Conn()
	ms, err := micro.AddService(nc, micro.Config{Name: "echo", Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Stop()
	if err := ms.AddEndpoint("say", micro.HandlerFunc(func(r micro.Request) {
		if string(r.Data()) == "bad" {
			_ = r.Error("400", "bad", nil)
			return
		}
		_ = r.Respond(r.Data())
	}), micro.WithEndpointSubject("test.say")); err != nil {
		t.Fatal(err)
	}
	reg := telemetry.NewRegistry()
	req := telemetry.NewRequests(reg)
	req.Add(ms)
	var none *telemetry.Requests
	none.Add(ms) // a nil Requests ignores services

	for _, body := range []string{"a", "b", "bad"} {
		if _, err := nc.Request("test.say", []byte(body), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	want := `
# HELP vpnfleet_nats_requests_total Requests handled by a NATS micro endpoint.
# TYPE vpnfleet_nats_requests_total counter
vpnfleet_nats_requests_total{endpoint="say",service="echo"} 3
# HELP vpnfleet_nats_request_errors_total Requests a NATS micro endpoint answered with an error.
# TYPE vpnfleet_nats_request_errors_total counter
vpnfleet_nats_request_errors_total{endpoint="say",service="echo"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "vpnfleet_nats_requests_total", "vpnfleet_nats_request_errors_total"); err != nil {
		t.Fatal(err)
	}
}
