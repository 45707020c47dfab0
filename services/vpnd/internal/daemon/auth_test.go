package daemon_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestNATSListenerForOtherHostsUsesTLSAndCredentials runs vpnd with its
// NATS reachable from other hosts: TLS is on without being asked, the
// certificate names the advertised host, every connection needs a
// credential, and standalone services get theirs from files that only the
// owner can read.
func TestNATSListenerForOtherHostsUsesTLSAndCredentials(t *testing.T) {
	dir := t.TempDir()
	v := start(t, dir, "--nats-listen", "0.0.0.0:0", "--nats-advertise", "vpn.example.org,192.0.2.7")
	if !strings.HasPrefix(v.NATSURL, "tls://") {
		t.Fatalf("nats url %q, want tls://", v.NATSURL)
	}
	natsDir := filepath.Join(dir, "nats")
	if v.NATSCreds != filepath.Join(natsDir, "service.creds") || v.NATSCA != filepath.Join(natsDir, "tls", "ca.pem") {
		t.Fatalf("creds %s, ca %s: want both under %s", v.NATSCreds, v.NATSCA, natsDir)
	}
	for path, want := range map[string]os.FileMode{natsDir: 0o700, v.NATSCreds: 0o600, filepath.Join(natsDir, "tls", "server-key.pem"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v, want %04o", path, err, fi.Mode(), want)
		}
	}

	nc := connectNATS(t, v.ready)
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("the service connection is not TLS")
	}

	if anon, err := nats.Connect(v.NATSURL, nats.RootCAs(v.NATSCA)); err == nil {
		anon.Close()
		t.Fatal("an anonymous connection was accepted")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}
	if plain, err := nats.Connect(strings.Replace(v.NATSURL, "tls://", "nats://", 1), nats.UserCredentials(v.NATSCreds)); err == nil {
		plain.Close()
		t.Fatal("a connection that does not trust vpnd's CA was accepted")
	}

	// The certificate names the advertised hosts and chains to the CA.
	caPEM, err := os.ReadFile(v.NATSCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(filepath.Join(natsDir, "tls", "server.pem"), filepath.Join(natsDir, "tls", "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "vpn.example.org"}); err != nil {
		t.Fatalf("certificate for vpn.example.org: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.7"}); err != nil {
		t.Fatalf("certificate for 192.0.2.7: %v", err)
	}
	if !slices.Contains(leaf.DNSNames, "localhost") {
		t.Fatalf("certificate names %v lack localhost", leaf.DNSNames)
	}
	if err := v.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestNATSOnLoopbackIsPlainButAuthenticated is the default: plain TCP on
// 127.0.0.1, still no anonymous access.
func TestNATSOnLoopbackIsPlainButAuthenticated(t *testing.T) {
	v := start(t, t.TempDir())
	if !strings.HasPrefix(v.NATSURL, "nats://127.0.0.1:") || v.NATSCA != "" {
		t.Fatalf("nats url %q, ca %q: want plain loopback", v.NATSURL, v.NATSCA)
	}
	if anon, err := nats.Connect(v.NATSURL); !errors.Is(err, nats.ErrAuthorization) {
		if anon != nil {
			anon.Close()
		}
		t.Fatalf("anonymous connection: %v, want an authorization violation", err)
	}
	nc := connectNATS(t, v.ready)
	nc.Close()
	if err := v.stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
