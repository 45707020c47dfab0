package svc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log destination the test reads while the binary writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var l struct{ Msg string }
		if json.Unmarshal([]byte(line), &l) == nil {
			out = append(out, l.Msg)
		}
	}
	return out
}

// TestStandaloneLogsItsShutdown: a standalone binary (vpn-agent, vpn-users,
// ...) asked to stop (SIGTERM cancels its context) says so when the
// request arrives and again when it has stopped, so an operator reading
// the logs sees the stop was asked for and completed.
func TestStandaloneLogsItsShutdown(t *testing.T) {
	ns := natstest.Start(t)
	cfg := svc.Defaults("")
	cfg.NATSURL, cfg.NATSCreds, cfg.Provision = ns.URL(), ns.ServiceCredsFile(), false
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- svc.Standalone(ctx, "vpn-test", "v0", cfg, &out, func(ctx context.Context, _ svc.Env) error {
			<-ctx.Done()
			return nil
		})
	}()
	waitfor.Cond(t, 10*time.Second, func() error {
		if !strings.Contains(strings.Join(out.messages(), "\n"), "started") {
			return fmt.Errorf("not started: %q", out.messages())
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Standalone did not return after its context ended")
	}
	msgs := out.messages()
	if len(msgs) < 3 || msgs[len(msgs)-1] != "stopped" || !strings.Contains(strings.Join(msgs, "\n"), "shutting down") {
		t.Fatalf("log messages %q: want shutting down, then stopped last", msgs)
	}
}

// TestStandaloneStopsWhenItsCredentialIsRevoked: a binary whose credential
// is revoked while it runs stops with one Unauthorized error, instead of
// running cut off from the bus.
func TestStandaloneStopsWhenItsCredentialIsRevoked(t *testing.T) {
	ns := natstest.Start(t)
	cred := ns.NodeCredential(t, "n1")
	cfg := svc.Defaults("")
	cfg.NATSURL, cfg.NATSCreds, cfg.Provision = ns.URL(), natstest.CredsFile(t, cred), false
	cfg.DialOptions = []nats.Option{nats.CustomInboxPrefix(subject.NodeInboxPrefix("n1"))}
	running := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- svc.Standalone(context.Background(), "vpn-agent", "test", cfg, &syncBuffer{}, func(ctx context.Context, _ svc.Env) error {
			close(running)
			<-ctx.Done()
			return nil
		})
	}()
	<-running
	pub, err := cred.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ns.Revoke(pub)
	var got error
	waitfor.Cond(t, 30*time.Second, func() error {
		select {
		case got = <-done:
			return nil
		default:
			return fmt.Errorf("still running after its credential was revoked")
		}
	})
	if !errors.Is(got, errs.Unauthorized) {
		t.Fatalf("Standalone returned %v, want Unauthorized", got)
	}
}

// TestStandaloneWithANodeCredentialIsReady: a binary that provisions
// nothing and connects with a node's credential (vpn-agent joined to a
// fleet) answers /readyz 200: its readiness does not ask JetStream about
// streams, which the node may not look up (the image's HEALTHCHECK
// reported every joined agent unhealthy).
func TestStandaloneWithANodeCredentialIsReady(t *testing.T) {
	ns := natstest.Start(t)
	cfg := svc.Defaults("")
	cfg.NATSURL, cfg.NATSCreds, cfg.Provision = ns.URL(), natstest.CredsFile(t, ns.NodeCredential(t, "n1")), false
	cfg.DialOptions = []nats.Option{nats.CustomInboxPrefix(subject.NodeInboxPrefix("n1"))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.OpsAddr = l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- svc.Standalone(ctx, "vpn-agent", "test", cfg, &syncBuffer{}, func(ctx context.Context, _ svc.Env) error {
			<-ctx.Done()
			return nil
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Standalone: %v", err)
		}
	}()
	waitfor.Cond(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + cfg.OpsAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz %d: %s", resp.StatusCode, body)
		}
		return nil
	})
}
