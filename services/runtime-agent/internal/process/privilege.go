package process

import (
	"bufio"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// capNumbers maps capability names (CAP_ prefixed) to their numbers.
var capNumbers = map[string]uintptr{
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

// agentCaps is what the agent itself holds, read once at New: it decides
// whether the runtime can switch users and which capabilities a workload
// may be given.
type agentCaps struct {
	effective, permitted, ambient uint64
}

func readAgentCaps() (agentCaps, error) {
	f, err := os.Open("/proc/thread-self/status")
	if err != nil {
		return agentCaps{}, errs.Wrap(errs.Unavailable, err, "reading the agent's capabilities")
	}
	defer f.Close()
	var a agentCaps
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var dst *uint64
		switch k {
		case "CapEff":
			dst = &a.effective
		case "CapPrm":
			dst = &a.permitted
		case "CapAmb":
			dst = &a.ambient
		default:
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return agentCaps{}, errs.Wrap(errs.Internal, err, "parsing %s of the agent", k)
		}
		*dst = n
	}
	return a, sc.Err()
}

func (a agentCaps) has(c uintptr) bool { return a.effective&(1<<c) != 0 }

// canSwitchUser tells whether spawned processes can get another uid/gid
// and no supplementary groups.
func (a agentCaps) canSwitchUser() bool {
	return a.has(unix.CAP_SETUID) && a.has(unix.CAP_SETGID)
}

// privileges is what a record asks of the kernel for its process.
type privileges struct {
	cred    *syscall.Credential
	ambient []uintptr
	keep    uint64 // capability mask kept in the bounding set
	drop    bool
	nnp     bool
}

// privilegesFor checks the privilege fields of rec against what the agent
// holds: a capability the agent does not hold cannot be handed on.
func (r *Runtime) privilegesFor(rec record) (privileges, error) {
	p := privileges{drop: rec.DropCapabilities, nnp: rec.NoNewPrivileges}
	if rec.User != "" {
		uid, gid, err := runtime.Spec{User: rec.User}.UIDGID()
		if err != nil {
			return p, errs.Field("user", err.Error())
		}
		p.cred = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	}
	if !rec.DropCapabilities {
		return p, nil
	}
	for _, name := range (runtime.Spec{Capabilities: rec.Capabilities}).CapabilityNames() {
		c, ok := capNumbers[name]
		if !ok {
			return p, errs.Field("capabilities", fmt.Sprintf("unknown capability %s", name))
		}
		if r.agent.permitted&(1<<c) == 0 {
			return p, errs.Field("capabilities", fmt.Sprintf("the agent does not hold %s, so it cannot hand it on", name))
		}
		p.keep |= 1 << c
		switch {
		case p.cred == nil && os.Geteuid() != 0 && r.agent.ambient&(1<<c) != 0:
			// Already ambient in the agent (systemd's AmbientCapabilities):
			// the child inherits it, with no capset, which the shipped
			// units' system-call filter forbids.
		case p.cred != nil && p.cred.Uid != 0 || p.cred == nil && os.Geteuid() != 0:
			p.ambient = append(p.ambient, c)
		}
	}
	return p, nil
}

// forkExec starts argv under p. Narrowing the bounding set, lowering the
// agent's ambient capabilities the child must not keep and setting
// no_new_privs are per-thread, so they are done on
// a thread locked for the purpose and thrown away with it (a goroutine that
// exits locked ends its thread; the Go runtime never clones new threads
// from one locked like this), and the child inherits them across fork. The
// switch of user and the ambient capabilities are done by the child itself
// between fork and exec (SysProcAttr).
func (r *Runtime) forkExec(argv0 string, argv []string, attr *syscall.ProcAttr, p privileges) (int, error) {
	attr.Sys.Credential = p.cred
	attr.Sys.AmbientCaps = p.ambient
	if !p.drop && !p.nnp {
		return syscall.ForkExec(argv0, argv, attr)
	}
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if p.nnp {
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				done <- result{err: fmt.Errorf("setting no_new_privs: %w", err)}
				return
			}
		}
		if p.drop {
			for c := uintptr(0); c < 64; c++ {
				if r.agent.ambient&(1<<c) == 0 || p.keep&(1<<c) != 0 {
					continue
				}
				if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, c, 0, 0); err != nil {
					done <- result{err: fmt.Errorf("lowering ambient capability %d: %w", c, err)}
					return
				}
			}
			if r.agent.has(unix.CAP_SETPCAP) {
				for c := uintptr(0); c < 64; c++ {
					if p.keep&(1<<c) != 0 {
						continue
					}
					if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err == unix.EINVAL {
						break // past the kernel's last capability
					} else if err != nil {
						done <- result{err: fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)}
						return
					}
				}
			}
		}
		pid, err := syscall.ForkExec(argv0, argv, attr)
		done <- result{pid, err}
	}()
	res := <-done
	return res.pid, res.err
}
