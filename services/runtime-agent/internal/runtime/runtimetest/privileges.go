package runtimetest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// UnprivilegedUser is the uid:gid the suite runs workloads as, the one the
// deploy images use.
const UnprivilegedUser = "65532:65532"

// capNetBindService is CAP_NET_BIND_SERVICE's bit in /proc capability masks.
const capNetBindService = uint64(1) << 10

// ProcStatus is what /proc/<pid>/status says about a process's privileges.
type ProcStatus struct {
	UIDs, GIDs                     [4]uint32 // real, effective, saved, filesystem
	Groups                         []uint32
	CapInh, CapPrm, CapEff, CapBnd uint64
	CapAmb                         uint64
	NoNewPrivs                     bool
	Seccomp                        int // 0 none, 1 strict, 2 filter
}

// ReadProcStatus reads the privileges of host pid pid.
func ReadProcStatus(pid int) (ProcStatus, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcStatus{}, err
	}
	defer f.Close()
	var st ProcStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		var perr error
		hex := func(dst *uint64) {
			if len(fields) == 1 {
				*dst, perr = strconv.ParseUint(fields[0], 16, 64)
			}
		}
		ids := func(dst *[4]uint32) {
			for i := 0; i < 4 && i < len(fields); i++ {
				n, err := strconv.ParseUint(fields[i], 10, 32)
				dst[i], perr = uint32(n), err
			}
		}
		switch k {
		case "Uid":
			ids(&st.UIDs)
		case "Gid":
			ids(&st.GIDs)
		case "Groups":
			for _, g := range fields {
				n, err := strconv.ParseUint(g, 10, 32)
				st.Groups, perr = append(st.Groups, uint32(n)), err
			}
		case "CapInh":
			hex(&st.CapInh)
		case "CapPrm":
			hex(&st.CapPrm)
		case "CapEff":
			hex(&st.CapEff)
		case "CapBnd":
			hex(&st.CapBnd)
		case "CapAmb":
			hex(&st.CapAmb)
		case "NoNewPrivs":
			st.NoNewPrivs = len(fields) == 1 && fields[0] == "1"
		case "Seccomp":
			if len(fields) == 1 {
				st.Seccomp, perr = strconv.Atoi(fields[0])
			}
		}
		if perr != nil {
			return ProcStatus{}, fmt.Errorf("parsing %s of pid %d: %w", k, pid, perr)
		}
	}
	return st, sc.Err()
}

// RootReadOnly reports whether the root filesystem of host pid pid is
// mounted read-only, from /proc/<pid>/mountinfo.
func RootReadOnly(pid int) (bool, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return false, err
	}
	ro := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" { // the last mount on / is the one seen
			ro = strings.Contains(","+f[5]+",", ",ro,")
		}
	}
	return ro, nil
}

// testPrivileges runs the workload confined and reads what the kernel says
// of its process: uid, gid, capability sets, no_new_privs, seccomp and a
// read-only root, wherever the runtime says it can do each.
func (s *suite) testPrivileges(t *testing.T) {
	t.Parallel()
	asRoot := os.Geteuid() == 0
	image := s.image
	if !s.caps.Images {
		image = WorldExecutable(t, s.bin)
	}
	user, uid := UnprivilegedUser, uint32(65532)
	if !s.caps.User {
		user, uid = "", uint32(os.Geteuid())
	}
	var nonRootCaps []string
	var nonRootMask uint64
	if s.caps.AmbientCapabilities {
		nonRootCaps, nonRootMask = []string{"NET_BIND_SERVICE"}, capNetBindService
	}
	tests := []struct {
		name string
		spec func(*runtime.Spec)
		uid  uint32
		caps uint64
	}{
		{"unprivileged user keeps only what it asks", func(sp *runtime.Spec) {
			sp.User, sp.Capabilities = user, nonRootCaps
		}, uid, nonRootMask},
		{"unprivileged user with no capability", func(sp *runtime.Spec) { sp.User = user }, uid, 0},
		{"root keeps only what it asks", func(sp *runtime.Spec) {
			sp.Capabilities = []string{"CAP_NET_BIND_SERVICE"}
			if s.caps.User {
				sp.User = "0:0"
			}
		}, uint32(os.Geteuid()), capNetBindService},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := s.spec(fmt.Sprintf("priv%d", i), nil)
			sp.Image = image
			sp.DropCapabilities, sp.NoNewPrivileges = true, true
			sp.ReadOnlyRootfs = s.caps.ReadOnlyRootfs
			tt.spec(&sp)
			id := s.create(t, sp)
			if err := s.rt.Start(ctxFor(t), id); err != nil {
				t.Fatalf("Start: %v", err)
			}
			w := s.waitState(t, id, runtime.StateRunning)
			waitReady(t, s.rt, id)
			st, err := ReadProcStatus(w.PID)
			if err != nil {
				t.Fatalf("reading the workload's status: %v", err)
			}
			for i, u := range st.UIDs {
				if u != tt.uid {
					t.Errorf("Uid[%d] = %d, want %d (%v)", i, u, tt.uid, st.UIDs)
				}
			}
			if sp.User != "" {
				_, gid, _ := sp.UIDGID()
				// Container runtimes list the primary group among the
				// supplementary ones; no other group may be there.
				extra := slices.DeleteFunc(slices.Clone(st.Groups), func(g uint32) bool { return g == gid })
				if st.GIDs != [4]uint32{gid, gid, gid, gid} || len(extra) != 0 {
					t.Errorf("Gid %v Groups %v, want all %d and no other group", st.GIDs, st.Groups, gid)
				}
			}
			if st.CapEff != tt.caps || st.CapPrm != tt.caps {
				t.Errorf("CapEff %#x CapPrm %#x, want both %#x", st.CapEff, st.CapPrm, tt.caps)
			}
			// Narrowing the bounding set needs CAP_SETPCAP, which a root
			// test run has.
			if asRoot && st.CapBnd != tt.caps {
				t.Errorf("CapBnd %#x, want %#x", st.CapBnd, tt.caps)
			}
			if !st.NoNewPrivs {
				t.Error("NoNewPrivs is 0, want 1")
			}
			if s.caps.Images && st.Seccomp != 2 {
				t.Errorf("Seccomp %d, want 2: the engine's default profile", st.Seccomp)
			}
			if s.caps.ReadOnlyRootfs {
				ro, err := RootReadOnly(w.PID)
				if err != nil {
					t.Fatalf("reading the workload's mounts: %v", err)
				}
				if !ro {
					t.Error("root filesystem is writable, want read-only")
				}
			}
		})
	}
}

// PassableDir returns a temporary dir every user may pass but not list
// (0711), for workloads run as another user: test temp dirs are 0700.
func PassableDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "vpnfleet-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// WorldExecutable links (or, across filesystems, copies) bin into a
// passable dir, where any user may execute it.
func WorldExecutable(tb testing.TB, bin string) string {
	tb.Helper()
	dst := filepath.Join(PassableDir(tb), filepath.Base(bin))
	if os.Link(bin, dst) == nil {
		if err := os.Chmod(dst, 0o755); err != nil {
			tb.Fatal(err)
		}
		return dst
	}
	src, err := os.Open(bin)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// privilegeRefusals are the invalid specs of the privilege fields.
func (s *suite) privilegeRefusals() []invalidCase {
	cases := []invalidCase{
		{"user not numeric", func(sp *runtime.Spec) { sp.User = "nobody" }, errs.Invalid},
		{"uid out of range", func(sp *runtime.Spec) { sp.User = "4294967296:0" }, errs.Invalid},
	}
	if !s.caps.User {
		cases = append(cases, invalidCase{"user unsupported", func(sp *runtime.Spec) { sp.User = UnprivilegedUser }, errs.Invalid})
	} else if !s.caps.AmbientCapabilities {
		cases = append(cases, invalidCase{"capability for a non-root user", func(sp *runtime.Spec) {
			sp.User, sp.Capabilities, sp.DropCapabilities = UnprivilegedUser, []string{"NET_BIND_SERVICE"}, true
		}, errs.Invalid})
	}
	if !s.caps.ReadOnlyRootfs {
		cases = append(cases, invalidCase{"read-only rootfs unsupported", func(sp *runtime.Spec) { sp.ReadOnlyRootfs = true }, errs.Invalid})
	}
	return cases
}
