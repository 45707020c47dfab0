package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const grace = 200 * time.Millisecond

func open(t *testing.T) (*registry.Registry, *natstest.Server) {
	t.Helper()
	s := natstest.Start(t)
	reg, err := registry.Open(ctxT(t), s.JetStream(), natstest.Logger(t), registry.Options{ClaimGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return reg, s
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestDanglingNameClaimIsTakenOverAfterGrace simulates crashes that leave a
// name claimed with no user carrying it: between claim and write, in the
// middle of a rename, and between deleting a user and releasing its name.
func TestDanglingNameClaimIsTakenOverAfterGrace(t *testing.T) {
	// The registry's clock runs ahead when the test says so: claims age
	// past the grace without the test waiting for it, and a slow machine
	// cannot age them early.
	const grace = time.Hour
	var ahead atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	s := natstest.Start(t)
	reg, err := registry.Open(ctxT(t), s.JetStream(), natstest.Logger(t), registry.Options{ClaimGrace: grace, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	js := s.JetStream()
	names, _ := js.KeyValue(ctx, subject.BucketUserNames)
	users, _ := js.KeyValue(ctx, subject.BucketUsers)

	// Crash between claim and write: the claim names a user that never was.
	if _, err := names.Create(ctx, "zoe", []byte("0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b")); err != nil {
		t.Fatal(err)
	}
	// Crash in a rename: the claim names a user that has another name.
	other, err := reg.Create(ctx, user.CreateRequest{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := names.Create(ctx, "yan", []byte(other.ID)); err != nil {
		t.Fatal(err)
	}
	// Crash between deleting a user and releasing its name.
	gone, err := reg.Create(ctx, user.CreateRequest{Name: "xena"})
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Delete(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"zoe", "yan", "xena"} {
		// A fresh claim may belong to a create still in flight.
		if _, err := reg.Create(ctx, user.CreateRequest{Name: name}); !errors.Is(err, errs.Conflict) {
			t.Fatalf("%s right after the claim: %v, want Conflict", name, err)
		}
	}
	ahead.Store(int64(2 * grace))
	for _, name := range []string{"zoe", "yan", "xena"} {
		if _, err := reg.Create(ctx, user.CreateRequest{Name: name}); err != nil {
			t.Fatalf("%s past the grace: %v", name, err)
		}
	}
	// A live user's claim is never taken over, however old.
	if _, err := reg.Create(ctx, user.CreateRequest{Name: "OTHER"}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("live user's name: %v, want Conflict", err)
	}
}

// TestIdempotentRetryFinishesAnInterruptedCreate simulates a create that
// stored its idempotency key and then died: the retry creates the user
// under the id the key recorded.
func TestIdempotentRetryFinishesAnInterruptedCreate(t *testing.T) {
	reg, s := open(t)
	ctx := ctxT(t)
	idem, _ := s.JetStream().KeyValue(ctx, subject.BucketUserIdempotency)
	const id = "6f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f"
	sum := sha256.Sum256([]byte("key-1"))
	if _, err := idem.Create(ctx, hex.EncodeToString(sum[:]), []byte(id)); err != nil {
		t.Fatal(err)
	}
	u, err := reg.Create(ctx, user.CreateRequest{Name: "walt", IdempotencyKey: "key-1"})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != id || u.Credentials.SOCKS5.Username != id {
		t.Fatalf("retry created %s (socks user %s), want %s", u.ID, u.Credentials.SOCKS5.Username, id)
	}
	if _, err := reg.Delete(ctx, user.RevisionRequest{ID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, user.CreateRequest{Name: "walt", IdempotencyKey: "key-1"}); !errors.Is(err, registry.ErrDeleted) {
		t.Fatalf("retry after delete: %v, want ErrDeleted (no resurrection)", err)
	}
}
