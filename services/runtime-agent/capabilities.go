package agent

import (
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/capability"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// capabilityUse is a capability the agent keeps and what it does with it.
type capabilityUse struct {
	cap uintptr
	why string
}

// capabilityUses lists what an agent driving the runtimes it opened
// (engine sockets by kind, as Runtimes.Addresses has them) uses (issue 17: "the agent itself keeps only what it uses"). On every
// runtime it proves a port free by binding it before an Xray is deployed
// there (reconcile.portsFree), and hands each Xray its config file, owned
// by the user Xray runs as; the process runtime also starts Xray as that
// user, narrows its bounding set, hands it CAP_NET_BIND_SERVICE and signals
// it. An engine's socket this user may not open needs CAP_DAC_OVERRIDE.
// Nothing else: the data dir is the agent's own, /proc/<pid>/status and
// stat, which the process runtime reads, are open to all (its Xray's
// /proc/<pid>/io is not: block I/O of an Xray of another user reads as
// zero rather than keeping CAP_SYS_PTRACE).
func capabilityUses(kinds []runtime.Kind, addrs map[runtime.Kind]string) []capabilityUse {
	bind := "proves a port below 1024 free before an xray listens on it"
	if slices.Contains(kinds, runtime.KindProcess) {
		bind += ", and hands xray the capability to"
	}
	uses := []capabilityUse{
		{unix.CAP_NET_BIND_SERVICE, bind},
		{unix.CAP_CHOWN, "hands each xray its config file, owned by the user xray runs as"},
	}
	if slices.Contains(kinds, runtime.KindProcess) {
		uses = append(uses,
			capabilityUse{unix.CAP_SETUID, "starts xray as --xray-user"},
			capabilityUse{unix.CAP_SETGID, "starts xray as --xray-user, with no supplementary groups"},
			capabilityUse{unix.CAP_SETPCAP, "narrows the bounding set of xray to what it keeps"},
			capabilityUse{unix.CAP_KILL, "stops an xray running as another user"},
		)
	}
	uid := uint32(os.Geteuid())
	gids := []uint32{uint32(os.Getegid())}
	if groups, err := os.Getgroups(); err == nil {
		for _, g := range groups {
			gids = append(gids, uint32(g))
		}
	}
	// The sockets the agent opened, not the configured ones: auto mode may
	// have found containerd at Docker's bundled socket instead.
	for _, k := range kinds {
		sock := addrs[k]
		if strings.HasPrefix(sock, "/") && capability.Unreachable(sock, 0o2, uid, gids) != "" {
			uses = append(uses, capabilityUse{unix.CAP_DAC_OVERRIDE, "opens the " + string(k) + " socket " + sock + ", which this user and its groups may not"})
		}
	}
	return uses
}

// limitCapabilities keeps, of the capabilities the process holds, those
// capabilityUses lists for kinds, in every set of every thread, and sets
// no_new_privs (nothing the agent runs gains privileges through execve:
// Xray gets its capability as an ambient one). It logs what it kept and
// why, and what it dropped. An agent holding no more than it uses (the
// systemd unit: an unprivileged user with ambient CAP_NET_BIND_SERVICE) is
// left as it was.
func limitCapabilities(log *slog.Logger, kinds []runtime.Kind, addrs map[runtime.Kind]string) error {
	uses := capabilityUses(kinds, addrs)
	var keep capability.Set
	for _, u := range uses {
		keep |= capability.Of(u.cap)
	}
	before, after, err := capability.Limit(keep, true)
	if errors.Is(err, capability.ErrCgo) {
		log.Warn("the agent keeps every capability it was started with: this binary was built with cgo",
			logkey.Kept, before.Permitted.String())
		return nil
	}
	if err != nil {
		return errs.Wrap(errs.Internal, err, "dropping the capabilities the agent does not use")
	}
	var kept []string
	for _, u := range uses {
		if after.Permitted.Has(u.cap) {
			kept = append(kept, capability.Name(u.cap)+" ("+u.why+")")
		}
	}
	log.Info("agent capabilities limited to what it uses",
		logkey.Kept, strings.Join(kept, "; "),
		logkey.Dropped, (all(before) &^ all(after)).String(),
		logkey.Bounding, after.Bounding.String())
	return nil
}

// all is every capability any set of s holds.
func all(s capability.Sets) capability.Set {
	return s.Effective | s.Permitted | s.Inheritable | s.Bounding | s.Ambient
}
