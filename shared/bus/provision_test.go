package bus_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// TestProvisionIsIdempotentAndDurable provisions, writes, provisions again,
// restarts the server on the same data dir and provisions a third time: every
// declared stream and bucket exists and the data written survives.
func TestProvisionIsIdempotentAndDurable(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	ctx := ctxT(t)
	js := s.JetStream()
	if err := bus.Ready(ctx, js); err == nil {
		t.Fatal("Ready before provisioning: want an error naming what is missing")
	}
	if err := bus.Provision(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	if err := bus.Ready(ctx, js); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "u1", []byte(`{"id":"u1"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, js, subject.Usage("n1"), "n1:1", rec{N: 7}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, 1); err != nil {
		t.Fatalf("second provision: %v", err)
	}

	s.Restart()
	js = s.JetStream()
	if err := bus.Provision(ctx, js, 1); err != nil {
		t.Fatalf("provision after restart: %v", err)
	}
	for _, cfg := range subject.Streams(1) {
		st, err := js.Stream(ctx, cfg.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", cfg.Name, err)
		}
		if st.CachedInfo().Config.Storage != jetstream.FileStorage {
			t.Errorf("stream %s is not file-backed", cfg.Name)
		}
	}
	for _, name := range subject.AtomicBatchStreams() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !st.CachedInfo().Config.AllowAtomicPublish {
			t.Errorf("stream %s does not allow atomic batch publish", name)
		}
	}
	kv, err = js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, "u1")
	if err != nil || string(e.Value()) != `{"id":"u1"}` {
		t.Fatalf("user after restart: %v %v", e, err)
	}
	st, _ := js.Stream(ctx, subject.StreamUsage)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("usage stream after restart holds %d messages, want 1", info.State.Msgs)
	}
}

func TestProvisionRejectsZeroReplicas(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoProvision: true})
	if err := bus.Provision(ctxT(t), s.JetStream(), 0); err == nil {
		t.Fatal("want an error for replicas 0")
	}
}
