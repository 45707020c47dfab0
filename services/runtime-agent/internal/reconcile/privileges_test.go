package reconcile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func TestNewRefusesBadXrayUser(t *testing.T) {
	for _, user := range []string{"nobody", "65532", "-1:0", "65532:4294967296"} {
		t.Run(user, func(t *testing.T) {
			_, err := New(Config{Node: "n1", PublicHost: "127.0.0.1", DataDir: t.TempDir(), XrayUser: user}, nil, nil, nil)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("New with xray user %q: %v, want Invalid", user, err)
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != "xray_user" {
				t.Errorf("fields %v, want one naming xray_user", fe)
			}
		})
	}
}

// TestUnreachable checks the walk that decides whether a process Xray can
// run as the Xray user: every directory on the way must be passable by it.
func TestUnreachable(t *testing.T) {
	root, err := os.MkdirTemp("", "vpnfleet-reach-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	mk := func(path string, mode os.FileMode) string {
		t.Helper()
		if err := os.MkdirAll(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	mk(root, 0o711)
	open := mk(filepath.Join(root, "open"), 0o711)
	closed := mk(filepath.Join(root, "closed"), 0o700)
	owned := mk(filepath.Join(root, "owned"), 0o700)
	ownedWant := owned // only root can hand it to the Xray user
	if os.Geteuid() == 0 {
		if err := os.Chown(owned, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		ownedWant = ""
	}
	bin := filepath.Join(open, "xray")
	if err := os.WriteFile(bin, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		mode uint32
		want string
	}{
		{open, 1, ""},
		{filepath.Join(closed, "data"), 1, closed},
		{filepath.Join(owned, "data"), 1, ownedWant},
		{filepath.Join(open, "not-yet"), 1, ""},
		{bin, 1, bin},
	}
	for _, tt := range tests {
		if got := unreachable(tt.path, tt.mode, 65532, 65532); got != tt.want {
			t.Errorf("unreachable(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
