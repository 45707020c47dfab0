package natsauth_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
)

func leafOf(t *testing.T, tl *natsauth.TLS) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(tl.CertFile(), tl.KeyFile())
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Certificate) != 2 {
		t.Fatalf("server.pem holds %d certificates, want the leaf and the CA", len(pair.Certificate))
	}
	if natsauth.Fingerprint(pair.Certificate[1]) != tl.CAFingerprint() {
		t.Fatal("the second certificate in server.pem is not the CA")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestTLSKeepsItsCAAndRenewsTheCertificateWhenNamesChange(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	first, err := natsauth.LoadOrCreateTLS(dir, []string{"vpn.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := leafOf(t, first)
	host, _ := os.Hostname()
	for _, name := range []string{"vpn.example.org", "localhost", strings.ToLower(host)} {
		if !slices.Contains(leaf.DNSNames, name) {
			t.Errorf("certificate names %v lack %s", leaf.DNSNames, name)
		}
	}
	if !slices.ContainsFunc(leaf.IPAddresses, net.IPv4(127, 0, 0, 1).Equal) {
		t.Errorf("certificate IPs %v lack 127.0.0.1", leaf.IPAddresses)
	}
	if len(first.CAFingerprint()) != 64 {
		t.Fatalf("fingerprint %q", first.CAFingerprint())
	}
	block, _ := pem.Decode(first.CAPEM())
	if block == nil || natsauth.Fingerprint(block.Bytes) != first.CAFingerprint() {
		t.Fatal("CAFingerprint is not the SHA-256 of the CA's DER")
	}

	again, err := natsauth.LoadOrCreateTLS(dir, []string{"vpn.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if !leafOf(t, again).Equal(leaf) {
		t.Fatal("the same names made a new certificate")
	}

	changed, err := natsauth.LoadOrCreateTLS(dir, []string{"10.1.2.3", "0.0.0.0", "other.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	if changed.CAFingerprint() != first.CAFingerprint() {
		t.Fatal("new names made a new CA; nodes pinning the old one would be cut off")
	}
	renewed := leafOf(t, changed)
	if renewed.Equal(leaf) {
		t.Fatal("new names kept the old certificate")
	}
	if slices.Contains(renewed.DNSNames, "vpn.example.org") || !slices.Contains(renewed.DNSNames, "other.example.org") ||
		!slices.ContainsFunc(renewed.IPAddresses, net.IPv4(10, 1, 2, 3).Equal) ||
		slices.ContainsFunc(renewed.IPAddresses, net.IPv4zero.Equal) {
		t.Fatalf("renewed names %v %v", renewed.DNSNames, renewed.IPAddresses)
	}
	for _, f := range []string{changed.KeyFile(), changed.CertFile(), changed.CAFile(), filepath.Join(dir, "ca-key.pem")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want 0600", f, err, fi.Mode())
		}
	}
}

func TestTLSRefusesAKeyOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	tl, err := natsauth.LoadOrCreateTLS(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{tl.KeyFile(), filepath.Join(dir, "ca-key.pem")} {
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := natsauth.LoadOrCreateTLS(dir, nil)
		if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), key) {
			t.Fatalf("%s readable by others: %v, want Invalid naming it", key, err)
		}
		if err := os.Chmod(key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPinnedClientConfigRejectsABadFingerprint(t *testing.T) {
	for _, fp := range []string{"", "abc", strings.Repeat("z", 64), strings.Repeat("a", 62)} {
		if _, err := natsauth.PinnedClientConfig(fp); !errors.Is(err, errs.Invalid) {
			t.Errorf("fingerprint %q: %v, want Invalid", fp, err)
		}
	}
	if _, err := natsauth.ClientConfigFromCA([]byte("not a pem")); !errors.Is(err, errs.Invalid) {
		t.Errorf("CA from garbage: %v, want Invalid", err)
	}
}
