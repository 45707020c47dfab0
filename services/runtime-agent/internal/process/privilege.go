package process

import (
	"fmt"
	"os"
	goruntime "runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/capability"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// agentCaps is what the agent itself holds: it decides whether the
// runtime can switch users and which capabilities a workload may be given.
type agentCaps capability.Sets

func readAgentCaps() (agentCaps, error) {
	s, err := capability.Current()
	if err != nil {
		return agentCaps{}, errs.Wrap(errs.Unavailable, err, "reading the agent's capabilities")
	}
	return agentCaps(s), nil
}

// held is what the agent holds now. The agent narrows its capabilities
// after opening its runtimes (package capability), so they are read when
// used; what New read stands in if /proc cannot be read.
func (r *Runtime) held() agentCaps {
	if a, err := readAgentCaps(); err == nil {
		return a
	}
	return r.agent
}

func (a agentCaps) has(c uintptr) bool { return a.Effective.Has(c) }

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
	held    agentCaps // the agent's own
}

// privilegesFor checks the privilege fields of rec against what the agent
// holds: a capability the agent does not hold cannot be handed on.
func (r *Runtime) privilegesFor(rec record) (privileges, error) {
	p := privileges{drop: rec.DropCapabilities, nnp: rec.NoNewPrivileges, held: r.held()}
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
		c, ok := capability.Number(name)
		if !ok {
			return p, errs.Field("capabilities", fmt.Sprintf("unknown capability %s", name))
		}
		if !p.held.Permitted.Has(c) {
			return p, errs.Field("capabilities", fmt.Sprintf("the agent does not hold %s, so it cannot hand it on", name))
		}
		p.keep |= 1 << c
		switch {
		case p.cred == nil && os.Geteuid() != 0 && p.held.Ambient.Has(c):
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
				if !p.held.Ambient.Has(c) || p.keep&(1<<c) != 0 {
					continue
				}
				if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_LOWER, c, 0, 0); err != nil {
					done <- result{err: fmt.Errorf("lowering ambient capability %d: %w", c, err)}
					return
				}
			}
			if p.held.has(unix.CAP_SETPCAP) {
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
