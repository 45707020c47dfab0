package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Events returns every event stored on EVENTS under subj (wildcards
// allowed), in order. It fails t if an event is undecodable or was stored
// with a Nats-Msg-Id other than its envelope id, which every publisher of
// events must set.
func Events(t testing.TB, js jetstream.JetStream, subj string) []event.Envelope {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, subject.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatalf("reading events on %s: %v", subj, err)
	}
	var out []event.Envelope
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			t.Fatalf("reading events on %s: %v", subj, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var env event.Envelope
			if err := json.Unmarshal(m.Data(), &env); err != nil {
				t.Fatalf("decoding event on %s: %v", m.Subject(), err)
			}
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != env.ID {
				t.Fatalf("event %s stored with msg id %q", env.ID, id)
			}
			out = append(out, env)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("reading events on %s: %v", subj, err)
		}
		if n == 0 {
			return out
		}
	}
}
