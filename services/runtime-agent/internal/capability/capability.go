// Package capability reads and narrows the Linux capabilities of the
// agent's own process (issue 17: "the agent itself keeps only what it
// uses").
//
// Capabilities, the bounding and ambient sets and no_new_privs belong to
// each thread, not to the process: Limit changes them on every thread of
// the Go runtime at once with syscall.AllThreadsSyscall, which only a
// binary built without cgo has (the product's are: CGO_ENABLED=0);
// elsewhere Limit returns ErrCgo and changes nothing.
//
// Limit only ever takes away, and makes no system call it does not need:
// an agent started with nothing more than it keeps (systemd's
// AmbientCapabilities under a system-call filter that denies capset) is
// left exactly as it was.
package capability

import (
	"bufio"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Set is a capability mask as /proc/<pid>/status shows it: bit n is
// capability n.
type Set uint64

// Of returns the set of the capabilities numbered cs.
func Of(cs ...uintptr) Set {
	var s Set
	for _, c := range cs {
		s |= 1 << c
	}
	return s
}

// Has tells whether c is in s.
func (s Set) Has(c uintptr) bool { return s&(1<<c) != 0 }

// Names spells s the kernel's way (CAP_NET_BIND_SERVICE), in number order;
// a capability this package has no name for is CAP_<number>.
func (s Set) Names() []string {
	var out []string
	for v := uint64(s); v != 0; v &= v - 1 {
		c := uintptr(bits.TrailingZeros64(v))
		out = append(out, Name(c))
	}
	return out
}

// String is Names joined by commas, "none" for the empty set.
func (s Set) String() string {
	if s == 0 {
		return "none"
	}
	return strings.Join(s.Names(), ",")
}

// numbers maps capability names (CAP_ prefixed) to their numbers.
var numbers = map[string]uintptr{
	"CAP_CHOWN": unix.CAP_CHOWN, "CAP_DAC_OVERRIDE": unix.CAP_DAC_OVERRIDE,
	"CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH, "CAP_FOWNER": unix.CAP_FOWNER,
	"CAP_FSETID": unix.CAP_FSETID, "CAP_KILL": unix.CAP_KILL, "CAP_SETGID": unix.CAP_SETGID,
	"CAP_SETUID": unix.CAP_SETUID, "CAP_SETPCAP": unix.CAP_SETPCAP,
	"CAP_LINUX_IMMUTABLE": unix.CAP_LINUX_IMMUTABLE, "CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_NET_BROADCAST": unix.CAP_NET_BROADCAST, "CAP_NET_ADMIN": unix.CAP_NET_ADMIN,
	"CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK, "CAP_IPC_OWNER": unix.CAP_IPC_OWNER,
	"CAP_SYS_MODULE": unix.CAP_SYS_MODULE, "CAP_SYS_RAWIO": unix.CAP_SYS_RAWIO,
	"CAP_SYS_CHROOT": unix.CAP_SYS_CHROOT, "CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE,
	"CAP_SYS_PACCT": unix.CAP_SYS_PACCT, "CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN,
	"CAP_SYS_BOOT": unix.CAP_SYS_BOOT, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
	"CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE, "CAP_SYS_TIME": unix.CAP_SYS_TIME,
	"CAP_SYS_TTY_CONFIG": unix.CAP_SYS_TTY_CONFIG, "CAP_MKNOD": unix.CAP_MKNOD,
	"CAP_LEASE": unix.CAP_LEASE, "CAP_AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
	"CAP_AUDIT_CONTROL": unix.CAP_AUDIT_CONTROL, "CAP_SETFCAP": unix.CAP_SETFCAP,
	"CAP_MAC_OVERRIDE": unix.CAP_MAC_OVERRIDE, "CAP_MAC_ADMIN": unix.CAP_MAC_ADMIN,
	"CAP_SYSLOG": unix.CAP_SYSLOG, "CAP_WAKE_ALARM": unix.CAP_WAKE_ALARM,
	"CAP_BLOCK_SUSPEND": unix.CAP_BLOCK_SUSPEND, "CAP_AUDIT_READ": unix.CAP_AUDIT_READ,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF,
	"CAP_CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE,
}

// Number returns the number of the capability name (CAP_ prefixed).
func Number(name string) (uintptr, bool) {
	c, ok := numbers[name]
	return c, ok
}

// Name returns the name of capability c.
func Name(c uintptr) string {
	for name, n := range numbers {
		if n == c {
			return name
		}
	}
	return "CAP_" + strconv.FormatUint(uint64(c), 10)
}

// Sets are one thread's capability sets and its no_new_privs flag.
type Sets struct {
	Effective, Permitted, Inheritable, Bounding, Ambient Set
	NoNewPrivs                                           bool
}

// Current reads the calling thread's sets. Limit keeps every thread's
// the same, so after it (and before, in a process no one narrowed one
// thread of) this is the process's.
func Current() (Sets, error) { return Read("/proc/thread-self/status") }

// Read reads the sets from a /proc status file: /proc/<pid>/status or
// /proc/<pid>/task/<tid>/status.
func Read(path string) (Sets, error) {
	f, err := os.Open(path)
	if err != nil {
		return Sets{}, fmt.Errorf("reading capabilities: %w", err)
	}
	defer f.Close()
	var s Sets
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *Set
		switch k {
		case "CapEff":
			dst = &s.Effective
		case "CapPrm":
			dst = &s.Permitted
		case "CapInh":
			dst = &s.Inheritable
		case "CapBnd":
			dst = &s.Bounding
		case "CapAmb":
			dst = &s.Ambient
		case "NoNewPrivs":
			s.NoNewPrivs = strings.TrimSpace(v) == "1"
			continue
		default:
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return Sets{}, fmt.Errorf("parsing %s of %s: %w", k, path, err)
		}
		*dst = Set(n)
		seen++
	}
	if err := sc.Err(); err != nil {
		return Sets{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if seen != 5 {
		return Sets{}, fmt.Errorf("%s lists %d of the 5 capability sets", path, seen)
	}
	return s, nil
}

// ErrCgo: the binary was built with cgo, so the capabilities of every
// thread cannot be changed at once.
var ErrCgo = errors.New("capabilities are per thread and this binary, built with cgo, cannot change every thread's")

// step is one change Plan decides, made on every thread.
type step struct {
	what string
	args [6]uintptr
	// capset, when set, is the new effective, permitted and inheritable.
	capset *[3]Set
}

// plan lists the system calls that narrow cur to keep, in the order they
// must run: the bounding set first (dropping from it takes CAP_SETPCAP,
// which the capset may take away), then the ambient set, then one capset,
// then no_new_privs. A bounding set that cannot be narrowed (no
// CAP_SETPCAP) is left as it is: Limit reports what remains.
func plan(cur Sets, keep Set, noNewPrivs bool) []step {
	var steps []step
	if cur.Effective.Has(unix.CAP_SETPCAP) {
		for _, c := range capsOf(cur.Bounding &^ keep) {
			steps = append(steps, step{what: "dropping " + Name(c) + " from the bounding set",
				args: [6]uintptr{unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, c}})
		}
	}
	for _, c := range capsOf(cur.Ambient &^ keep) {
		steps = append(steps, step{what: "lowering ambient " + Name(c),
			args: [6]uintptr{unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, c}})
	}
	next := [3]Set{cur.Effective & keep, cur.Permitted & keep, cur.Inheritable & keep}
	if next != [3]Set{cur.Effective, cur.Permitted, cur.Inheritable} {
		steps = append(steps, step{what: "setting the capabilities", capset: &next})
	}
	if noNewPrivs && !cur.NoNewPrivs {
		steps = append(steps, step{what: "setting no_new_privs",
			args: [6]uintptr{unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1}})
	}
	return steps
}

func capsOf(s Set) []uintptr {
	var out []uintptr
	for v := uint64(s); v != 0; v &= v - 1 {
		out = append(out, uintptr(bits.TrailingZeros64(v)))
	}
	return out
}

// Limit keeps, of what the process holds, only keep: in the effective,
// permitted, inheritable, ambient and bounding sets of every thread; with
// noNewPrivs it also sets no_new_privs (which stops execve from granting
// privileges, through setuid binaries or file capabilities; setuid() by a
// holder of CAP_SETUID still works). The bounding set is narrowed only
// while the process holds CAP_SETPCAP. It returns the sets before and
// after. With nothing to take away it makes no system call but reads.
func Limit(keep Set, noNewPrivs bool) (before, after Sets, err error) {
	if before, err = Current(); err != nil {
		return before, before, err
	}
	steps := plan(before, keep, noNewPrivs)
	if len(steps) == 0 {
		return before, before, nil
	}
	for i, s := range steps {
		var e syscall.Errno
		if s.capset != nil {
			e = capsetAllThreads(*s.capset)
		} else {
			a := s.args
			_, _, e = syscall.AllThreadsSyscall6(a[0], a[1], a[2], a[3], a[4], a[5], 0)
		}
		if e == syscall.ENOTSUP && i == 0 {
			return before, before, ErrCgo // nothing changed
		}
		if e != 0 {
			after, _ = Current()
			return before, after, fmt.Errorf("%s: %w", s.what, e)
		}
	}
	after, err = Current()
	return before, after, err
}

// capsetAllThreads sets the effective, permitted and inheritable sets of
// every thread to sets (pid 0 in the header: each thread itself).
func capsetAllThreads(sets [3]Set) syscall.Errno {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		shift := 32 * i
		data[i] = unix.CapUserData{
			Effective:   uint32(sets[0] >> shift),
			Permitted:   uint32(sets[1] >> shift),
			Inheritable: uint32(sets[2] >> shift),
		}
	}
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	return e
}

// Threads reads the sets of every thread of process pid, by thread id.
func Threads(pid int) (map[int]Sets, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing the threads of %d: %w", pid, err)
	}
	out := map[int]Sets{}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := Read(dir + "/" + e.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[tid] = s
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("process %d has no threads", pid)
	}
	return out, nil
}

// Unreachable returns the first path on the way to path (path itself
// included, needing the permission bits mode: 1 execute, 2 write, 4 read)
// that a process of uid with the groups gids may not pass without
// CAP_DAC_OVERRIDE, or "" when none. A missing path, or a missing
// directory on the way, is not in the way (whoever makes it chooses its
// mode).
func Unreachable(path string, mode uint32, uid uint32, gids []uint32) string {
	path = filepath.Clean(path)
	for p := path; ; p = filepath.Dir(p) {
		want := uint32(0o1)
		if p == path {
			want = mode
		}
		fi, err := os.Stat(p)
		if err != nil {
			if os.IsNotExist(err) && p != path {
				return ""
			}
			if !os.IsNotExist(err) {
				return p
			}
		} else if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			perm := uint32(fi.Mode().Perm())
			var bits uint32
			switch {
			case st.Uid == uid:
				bits = perm >> 6
			case slices.Contains(gids, st.Gid):
				bits = perm >> 3
			default:
				bits = perm
			}
			if bits&want != want {
				return p
			}
		}
		if p == "/" || p == "." {
			return ""
		}
	}
}
