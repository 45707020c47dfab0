package reconcile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/capability"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// DefaultXrayUser is the uid:gid Xray runs as unless told otherwise: the
// unprivileged user of the deploy images.
const DefaultXrayUser = "65532:65532"

// xrayPrivileges is how one Xray runs.
type xrayPrivileges struct {
	user         string // runtime.Spec.User; empty: the runtime's default
	capabilities []string
	readOnly     bool
	// owner owns the server's config dir and file: the user Xray runs as.
	owner [2]int
}

// apply sets the privilege fields of rs, and the label that records them.
func (p xrayPrivileges) apply(rs *runtime.Spec) {
	rs.User, rs.Capabilities = p.user, p.capabilities
	rs.DropCapabilities, rs.NoNewPrivileges, rs.ReadOnlyRootfs = true, true, p.readOnly
	rs.Labels[LabelPrivileges] = p.label()
}

// label is the value of LabelPrivileges.
func (p xrayPrivileges) label() string {
	return fmt.Sprintf("user=%s;caps=%s;ro=%t", p.user, strings.Join(p.capabilities, ","), p.readOnly)
}

// privilegesFor decides how the Xray of spec runs: as the Xray user, with
// every capability dropped but NET_BIND_SERVICE when an inbound listens below 1024, no_new_privs and a
// read-only root where the runtime has one. Where a runtime cannot give a
// non-root user a capability (Docker), an Xray that needs one runs as uid
// 0 with only that capability. The process runtime of an agent that cannot
// switch users, or whose Xray binary or data dir the Xray user cannot
// reach, runs Xray as the agent's own user (logged).
func (r *Reconciler) privilegesFor(rt runtime.Runtime, spec xray.Spec) xrayPrivileges {
	caps := rt.Capabilities()
	// Until told otherwise Xray runs as the agent's user and reads files
	// the agent owns.
	p := xrayPrivileges{user: r.cfg.XrayUser, readOnly: caps.ReadOnlyRootfs, owner: [2]int{os.Geteuid(), os.Getegid()}}
	for _, in := range spec.Inbounds {
		if in.Port < 1024 {
			p.capabilities = []string{"NET_BIND_SERVICE"}
			break
		}
	}
	uid, gid, _ := runtime.Spec{User: p.user}.UIDGID() // checked by New
	switch {
	case !caps.User:
		p.user = ""
		return p
	case uid != 0 && len(p.capabilities) > 0 && !caps.AmbientCapabilities:
		p.user, p.owner = "0:0", [2]int{0, 0}
		return p
	case uid == 0:
		p.owner = [2]int{0, int(gid)}
		return p
	}
	if !caps.Images {
		// The server's dir and config dir below the data dir are the
		// agent's to open (handConfig).
		for _, need := range []struct {
			path string
			mode uint32
		}{{r.cfg.XrayBin, 0o1}, {r.cfg.DataDir, 0o1}} {
			if blocked := capability.Unreachable(need.path, need.mode, uid, []uint32{gid}); blocked != "" {
				r.log.Warn("xray runs as the agent's user: the xray user cannot reach its files",
					logkey.Detail, r.cfg.XrayUser, logkey.Path, blocked)
				p.user = ""
				return p
			}
		}
	}
	p.owner = [2]int{int(uid), int(gid)}
	return p
}

// openDataDir makes the data dir passable (never listable) by the Xray
// user, so a process runtime's Xray reaches its config dir, which it owns;
// handConfig does the same for each server's dir.
func openDataDir(dir string) error {
	if err := os.Chmod(dir, 0o711); err != nil {
		return errs.Wrap(errs.Invalid, err, "data_dir: making %s passable for xray", dir)
	}
	return nil
}

// handConfig lets the user Xray runs as read the config of dir without
// CAP_DAC_OVERRIDE (even root's Xray has none), while the config dir stays
// the agent's, which replaces and removes the file without that capability
// either (vpn-agent drops it): the dir is the agent's with Xray's group
// (0710), the file Xray's (0600: it holds private keys).
func (p xrayPrivileges) handConfig(dir string) error {
	cfgDir := filepath.Join(dir, "config")
	if err := os.Chmod(dir, 0o711); err != nil {
		return fmt.Errorf("opening %s for xray: %w", dir, err)
	}
	if err := os.Lchown(cfgDir, os.Geteuid(), p.owner[1]); err != nil {
		return fmt.Errorf("opening %s to the xray group: %w", cfgDir, err)
	}
	if err := os.Chmod(cfgDir, 0o710); err != nil {
		return fmt.Errorf("opening %s to the xray group: %w", cfgDir, err)
	}
	file := filepath.Join(cfgDir, "config.json")
	if err := os.Lchown(file, p.owner[0], p.owner[1]); err != nil {
		return fmt.Errorf("handing %s to the xray user: %w", file, err)
	}
	return nil
}

// reclaimConfig gives the config dir of dir back to the agent where an
// agent of an earlier version handed it to the Xray user (0700), so that
// an agent without CAP_DAC_OVERRIDE can write into it and remove it.
func reclaimConfig(dir string) error {
	cfgDir := filepath.Join(dir, "config")
	fi, err := os.Lstat(cfgDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reclaiming %s: %w", cfgDir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		if err := os.Lchown(cfgDir, os.Geteuid(), -1); err != nil {
			return fmt.Errorf("reclaiming %s: %w", cfgDir, err)
		}
	}
	return nil
}
