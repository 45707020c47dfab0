package bus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// Publish stores v as JSON on a stream subject with Nats-Msg-Id = msgID, so
// a retried publish of the same business fact is stored once (within the
// stream's duplicate window). It returns the server's acknowledgement; a
// deduplicated retry has ack.Duplicate set and is not an error.
func Publish(ctx context.Context, js jetstream.JetStream, subj, msgID string, v any) (*jetstream.PubAck, error) {
	if msgID == "" {
		return nil, errs.New(errs.Internal, "publishing to %s: empty message id", subj)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding message %s for %s: %w", msgID, subj, err)
	}
	return PublishRaw(ctx, js, &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}, msgID)
}

// PublishRaw publishes an already-encoded message with the given id and the
// trace context of ctx.
func PublishRaw(ctx context.Context, js jetstream.JetStream, m *nats.Msg, msgID string) (ack *jetstream.PubAck, err error) {
	ctx, span := startSpan(ctx, trace.SpanKindProducer, "publish", m.Subject)
	defer func() { endSpan(span, err) }()
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	Inject(ctx, m.Header)
	ack, err = js.PublishMsg(ctx, m, jetstream.WithMsgID(msgID))
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "publishing %s to %s", msgID, m.Subject)
	}
	return ack, nil
}

// PublishEvent stores a domain event on EVENTS under subj, with the
// envelope's ID as message id and its type in a header.
func PublishEvent(ctx context.Context, js jetstream.JetStream, subj string, env event.Envelope) (*jetstream.PubAck, error) {
	data, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encoding event %s: %w", env.ID, err)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	m.Header.Set(event.Header, string(env.Type))
	return PublishRaw(ctx, js, m, env.ID)
}
