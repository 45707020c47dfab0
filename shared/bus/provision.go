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
	atomic := map[string]bool{}
	for _, name := range subject.AtomicBatchStreams() {
		atomic[name] = true
	}
	for _, cfg := range subject.Streams(replicas) {
		cfg.AllowAtomicPublish = atomic[cfg.Name]
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning stream %s", cfg.Name)
		}
	}
	for _, cfg := range subject.Buckets(replicas) {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning bucket %s", cfg.Bucket)
		}
		// A bucket's config has no atomic-publish switch: set it on the
		// stream behind it (CreateOrUpdateKeyValue just reset it).
		if name := subject.KVStream(cfg.Bucket); atomic[name] {
			if err := enableAtomic(ctx, js, name); err != nil {
				return err
			}
		}
	}
	return nil
}

func enableAtomic(ctx context.Context, js jetstream.JetStream, name string) error {
	st, err := js.Stream(ctx, name)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "reading stream %s", name)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return errs.Wrap(errs.Unavailable, err, "enabling atomic publish on %s", name)
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
