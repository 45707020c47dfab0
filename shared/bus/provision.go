package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Provision creates or updates every stream and bucket declared in package
// subject, with the given replica count. It is idempotent: running it on
// every start of every service converges the declarations and keeps the
// data.
func Provision(ctx context.Context, js jetstream.JetStream, replicas int) error {
	if replicas < 1 {
		return errs.Field("replicas", "must be at least 1")
	}
	for _, cfg := range subject.Streams(replicas) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning stream %s", cfg.Name)
		}
	}
	for _, cfg := range subject.Buckets(replicas) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning bucket %s", cfg.Bucket)
		}
	}
	return nil
}

// Ready reports whether every declared stream and bucket exists, naming the
// first one missing. Readiness probes call it.
func Ready(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range subject.Streams(1) {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	for _, cfg := range subject.Buckets(1) {
		if _, err := js.KeyValue(ctx, cfg.Bucket); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}
