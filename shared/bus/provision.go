package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Provision creates or updates every stream, bucket and object store
// declared in package subject, with the given replica count, in one pass.
// It is idempotent: running it on every start of every service converges
// the declarations and keeps the data. Replicas provisioning at the same
// moment do not fail each other: a create that loses the race ("already in
// use") is followed at once by an update to the declared config, which
// succeeds when the winner's config is the same (and converges it when
// not). Start-up calls ProvisionPatiently, which retries this pass.
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
		if err := createOrUpdate(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateStream(ctx, cfg); return err }); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning stream %s", cfg.Name)
		}
	}
	for _, cfg := range subject.Buckets(replicas) {
		if err := createOrUpdate(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateKeyValue(ctx, cfg); return err }); err != nil {
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
	for _, cfg := range subject.ObjectStores(replicas) {
		if err := createOrUpdate(ctx, func(ctx context.Context) error { _, err := js.CreateOrUpdateObjectStore(ctx, cfg); return err }); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning object store %s", cfg.Bucket)
		}
	}
	return nil
}

// declareTimeout bounds one create or update of one stream. On a cluster,
// a create that races another process's create of the same stream may get
// no answer at all: it must cost seconds, not the caller's whole deadline,
// before the next attempt finds the stream and updates it.
const declareTimeout = 2 * time.Second

// createOrUpdate runs a create-or-update within declareTimeout and, when
// another process created the same stream between its update (not found)
// and its create (already in use), runs it once more: now it is an update.
func createOrUpdate(ctx context.Context, op func(context.Context) error) error {
	try := func() error {
		ctx, cancel := context.WithTimeout(ctx, declareTimeout)
		defer cancel()
		return op(ctx)
	}
	err := try()
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrBucketExists) {
		err = try()
	}
	return err
}

// ProvisionPatiently is Provision retried with backoff until it succeeds
// or ctx ends (see Patiently), logging each failed attempt: a cluster
// still electing its leaders, or short of the peers an R3 stream needs,
// answers with errors that pass. Services run it at start.
func ProvisionPatiently(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) error {
	return Patiently(ctx, log, "provisioning streams and buckets", func(ctx context.Context) error {
		return Provision(ctx, js, replicas)
	})
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

// Ready reports whether every declared stream, bucket and object store exists, naming the
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
	for _, cfg := range subject.ObjectStores(1) {
		if _, err := js.ObjectStore(ctx, cfg.Bucket); err != nil {
			return fmt.Errorf("object store %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}
