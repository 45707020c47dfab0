package probe_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/probe"
)

// TestCheckReady asks a real ops handler, ready and not, on its loopback
// address and as a listener on every address would be named, and refuses
// an ops listener that is off.
func TestCheckReady(t *testing.T) {
	p := probe.New()
	var ready atomic.Bool
	ready.Store(true)
	p.Add("nats", func(context.Context) error {
		if !ready.Load() {
			return errors.New("disconnected")
		}
		return nil
	})
	mux := http.NewServeMux()
	p.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for _, a := range []string{addr, "0.0.0.0:" + port, ":" + port} {
		if err := probe.CheckReady(ctx, a); err != nil {
			t.Errorf("CheckReady(%s) = %v, want ready", a, err)
		}
	}
	ready.Store(false)
	if err := probe.CheckReady(ctx, addr); !errors.Is(err, errs.Unavailable) {
		t.Errorf("not ready: %v, want Unavailable", err)
	}
	if err := probe.CheckReady(ctx, ""); !errors.Is(err, errs.Invalid) {
		t.Errorf("no ops listener: %v, want Invalid", err)
	}
	srv.Close()
	if err := probe.CheckReady(ctx, addr); !errors.Is(err, errs.Unavailable) {
		t.Errorf("nothing listening: %v, want Unavailable", err)
	}
}
