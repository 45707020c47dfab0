package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func noEnv(string) string { return "" }

// TestRun: `vpn-cluster init` writes the cluster and says where; no
// subcommand, or bad flags, are one Invalid error naming the usage or the
// fields.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"init", "--dir", dir, "--hosts", "a.example,b.example,10.0.0.3"}, noEnv, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "tls://a.example:4222,tls://b.example:4222,tls://10.0.0.3:4222") {
		t.Fatalf("output %q names no --nats-url", out.String())
	}
	for _, f := range []string{"nats/nats-1.conf", "nats/nats-3.conf", "services/users.creds", "signer/account-signing.nk", "operator/operator.nk"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("init did not write %s: %v", f, err)
		}
	}
	if err := run(context.Background(), nil, noEnv, &out); !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "usage") {
		t.Fatalf("no subcommand: %v, want Invalid with the usage", err)
	}
	err := run(context.Background(), []string{"init", "--dir", dir, "--nodes", "2"}, noEnv, &out)
	if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "nodes: must be 3 or 5") {
		t.Fatalf("--nodes 2: %v, want Invalid naming nodes", err)
	}
}
