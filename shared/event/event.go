// Package event defines the envelope every domain event travels in on the
// EVENTS stream and the versioned event type names.
//
// An event type is "<kind>.<what>.v<N>" (user.created.v1). Payloads change
// additively; a breaking change is a new version, published alongside the
// old one until every reader has moved.
package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// Type names one versioned event type.
type Type string

// Header carries the event type on the NATS message, so subscribers can
// filter without decoding the body.
const Header = "Vpn-Event-Type"

// Envelope is the body of every message on EVENTS.
type Envelope struct {
	// ID is the business key of this event and its Nats-Msg-Id, e.g.
	// "<user id>:<revision>": a retried publish is stored once.
	ID   string    `json:"id"`
	Type Type      `json:"type"`
	Time time.Time `json:"time"`
	// Source names the service (and node, for agents) that published it.
	Source string          `json:"source"`
	Data   json.RawMessage `json:"data"`
}

// New builds an envelope around data, stamped now.
func New(typ Type, id, source string, data any) (Envelope, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return Envelope{}, fmt.Errorf("encoding %s event %s: %w", typ, id, err)
	}
	return Envelope{ID: id, Type: typ, Time: time.Now().UTC(), Source: source, Data: raw}, nil
}

// Decode unmarshals the payload into v.
func (e Envelope) Decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("decoding %s event %s: %w", e.Type, e.ID, err)
	}
	return nil
}
