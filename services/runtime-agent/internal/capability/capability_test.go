package capability

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPlanTakesOnlyWhatIsNotKept: the steps Limit takes for an agent as
// root, and none at all for one started as the systemd unit starts it
// (an unprivileged user holding CAP_NET_BIND_SERVICE in every set, under
// a system-call filter that would refuse capset).
func TestPlanTakesOnlyWhatIsNotKept(t *testing.T) {
	bind := Of(unix.CAP_NET_BIND_SERVICE)
	full := Set(1<<(unix.CAP_LAST_CAP+1) - 1)
	unit := Sets{Effective: bind, Permitted: bind, Inheritable: bind, Bounding: bind, Ambient: bind, NoNewPrivs: true}
	if steps := plan(unit, bind|Of(unix.CAP_CHOWN, unix.CAP_SETUID), true); len(steps) != 0 {
		t.Errorf("steps for the systemd unit's agent: %v, want none", whats(steps))
	}

	root := Sets{Effective: full, Permitted: full, Bounding: full}
	keep := Of(unix.CAP_CHOWN, unix.CAP_NET_BIND_SERVICE)
	steps := plan(root, keep, true)
	drops := 0
	for _, s := range steps {
		if s.args[1] == unix.PR_CAPBSET_DROP {
			drops++
			if keep.Has(s.args[2]) {
				t.Errorf("drops %s, which is kept", Name(s.args[2]))
			}
		}
	}
	if want := int(unix.CAP_LAST_CAP) + 1 - 2; drops != want {
		t.Errorf("%d bounding-set drops, want %d", drops, want)
	}
	n := len(steps)
	if n < 2 || steps[n-2].capset == nil || *steps[n-2].capset != [3]Set{keep, keep, 0} {
		t.Fatalf("steps %v: want the bounding set, then one capset to %s, then no_new_privs", whats(steps), keep)
	}
	if steps[n-1].args[1] != unix.PR_SET_NO_NEW_PRIVS {
		t.Errorf("last step %s, want setting no_new_privs", steps[n-1].what)
	}

	// Without CAP_SETPCAP the bounding set stays; ambient ones not kept
	// are lowered.
	amb := Of(unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW)
	user := Sets{Effective: amb, Permitted: amb, Inheritable: amb, Ambient: amb, Bounding: full}
	got := whats(plan(user, bind, false))
	want := []string{"lowering ambient CAP_NET_RAW", "setting the capabilities"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("steps %v, want %v", got, want)
	}
}

func whats(steps []step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.what)
	}
	return out
}

func TestReadThisProcess(t *testing.T) {
	s, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if s.Effective&^s.Permitted != 0 {
		t.Errorf("effective %s holds more than permitted %s", s.Effective, s.Permitted)
	}
	threads, err := Threads(os.Getpid())
	if err != nil || len(threads) == 0 {
		t.Fatalf("threads: %v, %v", threads, err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "status")); err == nil {
		t.Error("reading a missing status file succeeds")
	}
}

func TestNames(t *testing.T) {
	s := Of(unix.CAP_CHOWN, unix.CAP_NET_BIND_SERVICE)
	if got := s.String(); got != "CAP_CHOWN,CAP_NET_BIND_SERVICE" {
		t.Errorf("String = %q", got)
	}
	if Set(0).String() != "none" {
		t.Errorf("empty set = %q", Set(0).String())
	}
	if c, ok := Number("CAP_KILL"); !ok || c != unix.CAP_KILL {
		t.Errorf("Number(CAP_KILL) = %d, %v", c, ok)
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
		if got := Unreachable(tt.path, tt.mode, 65532, []uint32{65532}); got != tt.want {
			t.Errorf("Unreachable(%s) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
