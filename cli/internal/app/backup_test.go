package app_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
)

// TestBackupCreateVerifyRestore drives the backup commands as an operator
// does: an encrypted backup from the gateway, verified without a server,
// restored into an empty data dir; then the refusals, each one line that
// names the problem, with nothing written.
func TestBackupCreateVerifyRestore(t *testing.T) {
	h := newHarness(t)
	h.login()
	for _, name := range []string{"bk-ann", "bk-ben"} {
		h.must("users", "create", name)
	}
	dir := t.TempDir()
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte("s3cret phrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, []byte("not it\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "today.vpnbak")
	r := h.runWith(app.Env{BackupWorkFactor: 10}, "backup", "create", file, "--passphrase-file", pass)
	if r.err != nil {
		t.Fatalf("backup create: %v", r.err)
	}
	out := r.stdout
	if !strings.Contains(out, "encrypted") || !strings.Contains(out, "2 users") {
		t.Fatalf("backup create printed %q", out)
	}
	if r := h.run("backup", "create", file); r.err == nil || !strings.Contains(r.err.Error(), "exists") {
		t.Fatalf("a second create over the file: %v", r.err)
	}
	out = h.must("backup", "verify", file, "--passphrase-file", pass).stdout
	if !strings.Contains(out, "KV_users") || !strings.Contains(out, "2 users") {
		t.Fatalf("backup verify printed %q", out)
	}

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.vpnbak")
	if err := os.WriteFile(cut, data[:len(data)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "data")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{file, "--passphrase-file", wrong}, "wrong passphrase"},
		{[]string{file}, "backup is encrypted"},
		{[]string{cut, "--passphrase-file", pass}, "corrupt or truncated"},
	} {
		r := h.run(append([]string{"backup", "restore", "--data-dir", target}, tc.args...)...)
		if r.err == nil || !strings.Contains(r.err.Error(), tc.want) || strings.Contains(r.err.Error(), "\n") {
			t.Fatalf("restore %v: %v, want one line with %q", tc.args, r.err, tc.want)
		}
		if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Fatalf("restore %v was refused but made %s", tc.args, target)
		}
	}
	out = h.must("backup", "restore", file, "--data-dir", target, "--passphrase-file", pass).stdout
	if !strings.Contains(out, "restored") {
		t.Fatalf("restore printed %q", out)
	}
	for _, sub := range []string{"nats", "jetstream"} {
		if _, err := os.Stat(filepath.Join(target, sub)); err != nil {
			t.Fatalf("restored data dir: %v", err)
		}
	}
	r = h.run("backup", "restore", file, "--data-dir", target, "--passphrase-file", pass)
	if r.err == nil || !strings.Contains(r.err.Error(), "not empty") {
		t.Fatalf("restore into the used data dir: %v", r.err)
	}
	if r := h.run("backup", "restore", file); r.err == nil || !strings.Contains(r.err.Error(), "exactly one target") {
		t.Fatalf("restore without a target: %v", r.err)
	}
}
