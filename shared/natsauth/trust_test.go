package natsauth_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func load(t *testing.T, dir string) *natsauth.Trust {
	t.Helper()
	tr, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		t.Fatalf("loading the trust: %v", err)
	}
	return tr
}

func TestLoadOrCreateKeepsTheSameTrustAcrossLoads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trust")
	first := load(t, dir)
	second := load(t, dir)
	if first.Operator() != second.Operator() || first.SystemAccount() != second.SystemAccount() || first.Account() != second.Account() {
		t.Fatal("a second load made new keys")
	}
	if first.OperatorJWT() != second.OperatorJWT() {
		t.Fatal("a second load issued a new operator JWT")
	}
	a, b := first.AccountJWTs(), second.AccountJWTs()
	if len(a) != 2 || a[first.Account()] != b[first.Account()] || a[first.SystemAccount()] != b[first.SystemAccount()] {
		t.Fatal("a second load issued new account JWTs")
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("trust dir mode %04o, want 0700", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %04o, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if len(entries) == 0 {
		t.Fatal("nothing was written")
	}
}

func TestLoadOrCreateNarrowsAnOpenDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trust")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	load(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("trust dir mode %04o, want 0700", fi.Mode().Perm())
	}
}

func TestLoadOrCreateRefusesASeedOthersCanRead(t *testing.T) {
	dir := t.TempDir()
	load(t, dir)
	for _, mode := range []os.FileMode{0o640, 0o604, 0o660} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".nk") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := natsauth.LoadOrCreate(dir)
			if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("%s at %04o: %v, want one Invalid line naming the file", e.Name(), mode, err)
			}
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	load(t, dir) // fixed modes load again
}

func TestServiceCredentialHasTheWholeAccount(t *testing.T) {
	tr := load(t, t.TempDir())
	cred, err := tr.ServiceCredential("users")
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	if uc.Name != "service:users" || uc.IssuerAccount != tr.Account() || len(uc.Pub.Allow)+len(uc.Pub.Deny)+len(uc.Sub.Allow)+len(uc.Sub.Deny) > 0 || uc.Resp != nil || uc.Expires != 0 {
		t.Fatalf("service claims: name %q issuer account %q perms %+v expires %d", uc.Name, uc.IssuerAccount, uc.Permissions, uc.Expires)
	}
	file, err := cred.File()
	if err != nil {
		t.Fatal(err)
	}
	if token, err := jwt.ParseDecoratedJWT(file); err != nil || token != cred.JWT {
		t.Fatalf("creds file JWT: %v", err)
	}
	if kp, err := jwt.ParseDecoratedNKey(file); err != nil {
		t.Fatalf("creds file seed: %v", err)
	} else if pub, _ := kp.PublicKey(); pub != uc.Subject {
		t.Fatal("creds file seed is not the JWT's key")
	}
}

func TestNodeJWTCarriesNodePermissions(t *testing.T) {
	tr := load(t, t.TempDir())
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	token, err := tr.NodeJWT("n1", pub)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	want := subject.NodePermissions("n1")
	if uc.Subject != pub || uc.Name != "node:n1" || uc.IssuerAccount != tr.Account() {
		t.Fatalf("node claims: subject %s name %q issuer account %s", uc.Subject, uc.Name, uc.IssuerAccount)
	}
	if !slices.Equal(uc.Pub.Allow, jwt.StringList(want.Publish)) || !slices.Equal(uc.Sub.Allow, jwt.StringList(want.Subscribe)) {
		t.Fatalf("node permissions %+v, want %+v", uc.Permissions, want)
	}
	if uc.Resp == nil || uc.Resp.MaxMsgs != 1 {
		t.Fatalf("node may not answer its commands: %+v", uc.Resp)
	}
	if uc.Expires != 0 {
		t.Fatal("a node credential expires; revocation is what ends it")
	}

	tests := []struct {
		name, node, pub, field string
	}{
		{"bad node", "n1.>", pub, "node"},
		{"empty node", "", pub, "node"},
		{"account key", "n1", tr.Account(), "public_key"},
		{"garbage key", "n1", "UABC", "public_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tr.NodeJWT(tt.node, tt.pub)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			if fs := errs.FieldsOf(err); len(fs) != 1 || fs[0].Field != tt.field {
				t.Fatalf("fields %v, want %s", fs, tt.field)
			}
		})
	}
}

func TestJoinCredentialExpires(t *testing.T) {
	tr := load(t, t.TempDir())
	expires := time.Now().Add(time.Hour)
	cred, err := tr.JoinCredential("tok1", expires)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(cred.JWT)
	if err != nil {
		t.Fatal(err)
	}
	want := subject.JoinPermissions("tok1")
	if uc.Expires != expires.Unix() || uc.Name != "join:tok1" {
		t.Fatalf("join claims: expires %d name %q", uc.Expires, uc.Name)
	}
	if !slices.Equal(uc.Pub.Allow, jwt.StringList(want.Publish)) || !slices.Equal(uc.Sub.Allow, jwt.StringList(want.Subscribe)) || uc.Resp != nil {
		t.Fatalf("join permissions %+v, want %+v", uc.Permissions, want)
	}
	if _, err := tr.JoinCredential("tok1", time.Now().Add(-time.Second)); !errors.Is(err, errs.Invalid) {
		t.Fatalf("a join credential expiring in the past: %v, want Invalid", err)
	}
	if _, err := tr.JoinCredential("a.b", expires); !errors.Is(err, errs.Invalid) {
		t.Fatalf("a join credential for token a.b: %v, want Invalid", err)
	}
}

func TestEnsureServiceCredsFile(t *testing.T) {
	dir := t.TempDir()
	tr := load(t, filepath.Join(dir, "trust"))
	path := filepath.Join(dir, "service.creds")
	if err := tr.EnsureServiceCredsFile(path, "standalone"); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("creds file mode %04o, want 0600", fi.Mode().Perm())
	}
	if err := tr.EnsureServiceCredsFile(path, "standalone"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("a valid creds file was replaced")
	}

	// Another trust's credential, or garbage, is replaced.
	other := load(t, filepath.Join(dir, "other"))
	for name, write := range map[string]func() error{
		"another trust's": func() error {
			cred, err := other.ServiceCredential("x")
			if err != nil {
				return err
			}
			return natsauth.WriteCredsFile(path, cred)
		},
		"garbage": func() error { return os.WriteFile(path, []byte("nope"), 0o600) },
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		if err := tr.EnsureServiceCredsFile(path, "standalone"); err != nil {
			t.Fatalf("%s creds file: %v", name, err)
		}
		data, _ := os.ReadFile(path)
		token, err := jwt.ParseDecoratedJWT(data)
		if err != nil {
			t.Fatal(err)
		}
		if uc, err := jwt.DecodeUserClaims(token); err != nil || uc.IssuerAccount != tr.Account() {
			t.Fatalf("%s creds file was not replaced with one of this trust", name)
		}
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.EnsureServiceCredsFile(path, "standalone"); !errors.Is(err, errs.Invalid) {
		t.Fatalf("creds file readable by others: %v, want Invalid", err)
	}
}
