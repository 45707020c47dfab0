package gateway_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func jsFilter(subj string) jetstream.OrderedConsumerConfig {
	return jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}}
}

func jsWait(d time.Duration) jetstream.FetchOpt { return jetstream.FetchMaxWait(d) }

// natsOnly is the Env of a fresh JetStream server with nothing running.
func natsOnly(t *testing.T) svc.Env {
	ns := natstest.Start(t)
	js, err := jetstream.New(ns.Conn())
	if err != nil {
		t.Fatal(err)
	}
	return svc.Env{NC: ns.Conn(), JS: js, Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
}
