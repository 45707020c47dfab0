package bus_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
)

// TestDialTrustsTheGivenCA dials a TLS server as a standalone service does:
// a creds file and the CA file of the server's private CA.
func TestDialTrustsTheGivenCA(t *testing.T) {
	dir := t.TempDir()
	trust, err := natsauth.LoadOrCreate(filepath.Join(dir, "trust"))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := natsauth.LoadOrCreateTLS(filepath.Join(dir, "tls"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.Start(natsserver.Config{
		DataDir: dir, Listen: "127.0.0.1:0", Trust: trust,
		TLS: &natsserver.TLSFiles{Cert: tl.CertFile(), Key: tl.KeyFile(), CA: tl.CAFile()},
	}, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	creds := filepath.Join(dir, "service.creds")
	if err := trust.EnsureServiceCredsFile(creds, "test"); err != nil {
		t.Fatal(err)
	}
	log := natstest.Logger(t)

	nc, err := bus.Dial(ctxT(t), bus.DialConfig{URL: srv.ClientURL(), Creds: creds, CA: tl.CAFile(), Name: "test"}, log)
	if err != nil {
		t.Fatalf("dialing with the CA: %v", err)
	}
	if !nc.TLSRequired() {
		t.Fatal("the connection is not TLS")
	}
	nc.Close()

	if _, err := bus.Dial(ctxT(t), bus.DialConfig{URL: srv.ClientURL(), Creds: creds, CA: filepath.Join(dir, "missing.pem")}, log); !errors.Is(err, errs.Invalid) {
		t.Fatalf("dialing with a missing CA file: %v, want Invalid", err)
	}

	// Another CA is never trusted: the dial waits until its context ends.
	other, err := natsauth.LoadOrCreateTLS(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := bus.Dial(ctx, bus.DialConfig{URL: srv.ClientURL(), Creds: creds, CA: other.CAFile()}, log); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("dialing with another CA: %v, want Unavailable", err)
	}
}
