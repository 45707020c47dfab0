package natsauth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
)

// TestSignerMintsButCannotRevoke: the signer directory holds the account
// signing key and the JWTs, not the operator's or the accounts' keys; a
// Trust loaded from it mints node credentials the full trust's account
// accepts, and refuses to revoke or mint system users (Unavailable).
func TestSignerMintsButCannotRevoke(t *testing.T) {
	full := load(t, filepath.Join(t.TempDir(), "trust"))
	dir := filepath.Join(t.TempDir(), "signer")
	if err := full.WriteSigner(dir); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if data, _ := os.ReadFile(filepath.Join(dir, e.Name())); strings.HasPrefix(string(data), "SO") || e.Name() == "operator.nk" || e.Name() == "account.nk" || e.Name() == "system.nk" {
			t.Fatalf("the signer directory holds %s, an operator or account key", e.Name())
		}
	}
	s, err := natsauth.LoadSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Account() != full.Account() || s.SystemAccount() != full.SystemAccount() || s.Operator() != full.Operator() || s.CanRevoke() {
		t.Fatalf("signer %s/%s/%s can revoke %v", s.Operator(), s.SystemAccount(), s.Account(), s.CanRevoke())
	}
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	token, err := s.NodeJWT("edge-1", pub)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil || uc.IssuerAccount != full.Account() {
		t.Fatalf("node JWT %+v, %v", uc, err)
	}
	if err := s.Revoke(context.Background(), nil, pub); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("revoke: %v, want Unavailable", err)
	}
	if _, err := s.SystemCredential("x"); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("system credential: %v, want Unavailable", err)
	}
	if err := os.Remove(filepath.Join(dir, "account.jwt")); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.LoadSigner(dir); !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), "account.jwt") {
		t.Fatalf("a signer dir without account.jwt: %v, want Invalid naming it", err)
	}
}
