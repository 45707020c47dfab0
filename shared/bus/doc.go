// Package bus is the project's plumbing over NATS: dialing, publishing with
// a deterministic Nats-Msg-Id, a typed JetStream consumer adapter that owns
// decoding, per-message timeouts, logging and the ack decision, a typed
// adapter for request/reply (micro) endpoints and their clients, a micro
// service that handles requests concurrently and measures them, W3C trace
// context in message headers, and idempotent provisioning of every stream
// and bucket declared in package subject.
//
// Business code hands bus a func(ctx, T) error and never touches a
// jetstream.Msg or a micro.Request.
package bus
