package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// TestStandaloneJoinsExternalNATS runs vpn-gateway as its own process would,
// against a NATS server it did not start, and waits until /readyz finds
// NATS and JetStream ready; only the services behind the API, not running
// here, are missing.
func TestStandaloneJoinsExternalNATS(t *testing.T) {
	ns := natstest.StartWith(t, natstest.Options{NoProvision: true})
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--nats-url", ns.URL(), "--nats-creds", ns.ServiceCredsFile(), "--http-addr", addr, "--ops-addr", ""}, func(string) string { return "" }, io.Discard)
	}()
	waitfor.Cond(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var rz struct {
			Failed map[string]string `json:"failed"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
			return fmt.Errorf("readyz %d: %w", resp.StatusCode, err)
		}
		missing := slices.Sorted(maps.Keys(rz.Failed))
		if resp.StatusCode != http.StatusServiceUnavailable || !slices.Equal(missing, []string{"jobs service", "users service"}) {
			return fmt.Errorf("readyz %d, failing %v; want 503 failing only the jobs and users services", resp.StatusCode, rz.Failed)
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
