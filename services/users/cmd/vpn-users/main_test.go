package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRunServesUsersOverNATS starts the binary's run against a real
// JetStream server and drives it the way the gateway does.
func TestRunServesUsersOverNATS(t *testing.T) {
	s := natstest.Start(t)
	nc := s.Conn()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--nats-url", s.URL(), "--nats-creds", s.ServiceCredsFile(), "--ops-addr", "", "--enforce-interval", "1s"}, func(string) string { return "" }, io.Discard)
	}()
	var u user.User
	waitfor.Cond(t, 10*time.Second, func() error {
		var err error
		u, err = bus.Request[user.User](ctx, nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: "alice", IdempotencyKey: "k"})
		return err
	})
	got, err := bus.Request[user.User](ctx, nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{Name: "ALICE"})
	if err != nil || got.ID != u.ID {
		t.Fatalf("get: %v, %s want %s", err, got.ID, u.ID)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	if _, err := bus.Request[user.User](rctx, nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: u.ID}); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("after stop: %v, want Unavailable (nobody answering)", err)
	}
}

func TestBadConfigIsInvalid(t *testing.T) {
	err := run(context.Background(), []string{"--request-timeout", "2m"}, func(string) string { return "" }, io.Discard)
	if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
		t.Fatalf("err %v, want Invalid naming name_claim_grace", err)
	}
}

// TestHealthcheck: `vpn-users healthcheck` (the images' HEALTHCHECK) exits
// 0 once the running binary's /readyz on its --ops-addr answers, fails as
// Unavailable when nothing answers there, and as Invalid without an ops
// listener to ask.
func TestHealthcheck(t *testing.T) {
	s := natstest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := l.Addr().String()
	l.Close()
	noEnv := func(string) string { return "" }
	check := func() error {
		return run(context.Background(), []string{"healthcheck", "--ops-addr", ops}, noEnv, io.Discard)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--nats-url", s.URL(), "--nats-creds", s.ServiceCredsFile(), "--ops-addr", ops}, noEnv, io.Discard)
	}()
	waitfor.Cond(t, 10*time.Second, check)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := check(); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("healthcheck with nothing running: %v, want Unavailable", err)
	}
	if err := run(context.Background(), []string{"healthcheck", "--ops-addr", ""}, noEnv, io.Discard); !errors.Is(err, errs.Invalid) {
		t.Fatalf("healthcheck without an ops listener: %v, want Invalid", err)
	}
}

// TestNATSTrustFlags: --nats-trust and --join-urls go together, join URLs
// are TLS, and a directory that is no signer directory is refused naming
// its file.
func TestNATSTrustFlags(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args  []string
		field string
	}{
		{[]string{"--nats-trust", t.TempDir()}, "join_urls"},
		{[]string{"--join-urls", "tls://n1:4222"}, "join_urls"},
		{[]string{"--nats-trust", t.TempDir(), "--join-urls", "nats://n1:4222"}, "join_urls[0]"},
	} {
		err := run(context.Background(), tc.args, noEnv, io.Discard)
		found := false
		for _, fe := range errs.FieldsOf(err) {
			found = found || fe.Field == tc.field
		}
		if !errors.Is(err, errs.Invalid) || !found {
			t.Errorf("%v: %v, want Invalid naming %s", tc.args, err, tc.field)
		}
	}
	s := natstest.Start(t)
	err := run(context.Background(), []string{"--nats-url", s.URL(), "--nats-creds", s.ServiceCredsFile(), "--ops-addr", "",
		"--nats-trust", t.TempDir(), "--join-urls", "tls://n1:4222"}, noEnv, io.Discard)
	if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "account-signing.nk") {
		t.Fatalf("an empty signer directory: %v, want Invalid naming account-signing.nk", err)
	}
}
