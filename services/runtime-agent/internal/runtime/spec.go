package runtime

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Spec describes a workload to create. The zero values are the defaults
// the agent wants for a VPN server: host network, no restart, no limit.
type Spec struct {
	// Name is unique among the runtime's workloads; it becomes the
	// container name (or id). Lowercase letters, digits, '.', '_', '-'.
	Name string
	// Image is an image reference, or for the process runtime an absolute
	// path to an executable.
	Image string
	// Command replaces the image's command (for processes: the arguments
	// after the executable). Empty keeps the image's.
	Command []string
	Env     map[string]string
	// Labels are added to the owner labels; they must not set those.
	Labels map[string]string
	Mounts []Mount
	// NetworkMode defaults to the first of Capabilities.NetworkModes (host
	// everywhere), since VPN servers need the host's addresses.
	NetworkMode NetworkMode
	// Ports publishes container ports; only with NetworkMode bridge.
	Ports []Port
	// Capabilities are Linux capabilities to add, e.g. NET_ADMIN; with
	// DropCapabilities they are the only ones the workload keeps.
	Capabilities []string
	// User runs the workload as "uid:gid" (numbers, no supplementary
	// groups); empty keeps the image's user (the agent's for processes).
	// Only where Capabilities.User.
	User string
	// DropCapabilities drops every capability, from the effective,
	// permitted and bounding sets, except Spec.Capabilities, which a
	// non-root User keeps as effective (ambient) capabilities.
	DropCapabilities bool
	// NoNewPrivileges sets no_new_privs: no setuid binary or file
	// capability can raise the workload's privileges.
	NoNewPrivileges bool
	// ReadOnlyRootfs makes the root filesystem read-only; mounts keep
	// their own mode. Only where Capabilities.ReadOnlyRootfs.
	ReadOnlyRootfs bool
	Restart        RestartPolicy
	// MemoryBytes limits memory (0 = none); only where
	// Capabilities.MemoryLimit.
	MemoryBytes int64
	// Health is an optional health check; only where Capabilities.Health.
	Health *HealthCheck
}

// Mount binds a host path into the workload.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// NetworkMode selects the workload's network namespace.
type NetworkMode string

// The network modes. Host is the default: a VPN server must see the host's
// addresses and ports.
const (
	NetworkHost   NetworkMode = "host"
	NetworkBridge NetworkMode = "bridge"
	NetworkNone   NetworkMode = "none"
)

// Port publishes a container port on the host (bridge mode only).
type Port struct {
	HostIP        string
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp" (default) or "udp"
}

// RestartPolicy says what happens when the workload exits on its own.
type RestartPolicy struct {
	Name RestartName
	// MaxRetries bounds on-failure restarts; 0 means no bound.
	MaxRetries int
}

// RestartName is a restart policy name, spelled as Docker spells it.
type RestartName string

// The restart policies.
const (
	RestartNo        RestartName = "no"
	RestartOnFailure RestartName = "on-failure"
	RestartAlways    RestartName = "always"
)

// HealthCheck runs Command inside the workload every Interval.
type HealthCheck struct {
	Command  []string
	Interval time.Duration
	Timeout  time.Duration
	Retries  int
}

var (
	nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	capRe  = regexp.MustCompile(`^(CAP_)?[A-Z_]+$`)
	userRe = regexp.MustCompile(`^[0-9]{1,10}:[0-9]{1,10}$`)
	envRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// Validate checks spec against the rules every runtime shares and against
// what caps says the runtime can do. It returns an errs.Invalid listing
// every rejected field, so a caller fixes them all at once.
func (s Spec) Validate(caps Capabilities) error {
	var bad []errs.FieldError
	add := func(field, rule string, args ...any) {
		bad = append(bad, errs.FieldError{Field: field, Rule: fmt.Sprintf(rule, args...)})
	}
	if !nameRe.MatchString(s.Name) {
		add("name", "must be 1-63 of a-z 0-9 . _ - starting with a letter or digit")
	}
	switch {
	case s.Image == "":
		add("image", "required")
	case !caps.Images && !path.IsAbs(s.Image):
		add("image", "must be an absolute executable path for this runtime")
	case strings.ContainsAny(s.Image, " \t\n"):
		add("image", "must not contain spaces")
	}
	for k := range s.Env {
		if !envRe.MatchString(k) {
			add("env", "bad variable name %q", k)
		}
	}
	for k := range s.Labels {
		switch {
		case k == "":
			add("labels", "empty key")
		case k == LabelManaged || k == LabelNode:
			add("labels", "%s is reserved for the runtime", k)
		}
	}
	if len(s.Mounts) > 0 && !caps.Mounts {
		add("mounts", "not supported by this runtime")
	}
	for i, m := range s.Mounts {
		if !path.IsAbs(m.Source) || !path.IsAbs(m.Target) {
			add(fmt.Sprintf("mounts[%d]", i), "source and target must be absolute paths")
		}
	}
	mode := s.NetworkMode
	if mode == "" && len(caps.NetworkModes) > 0 {
		mode = caps.NetworkModes[0]
	}
	if !caps.SupportsNetwork(mode) {
		add("network_mode", "%q not supported here (supported: %v)", mode, caps.NetworkModes)
	}
	if len(s.Ports) > 0 && mode != NetworkBridge {
		add("ports", "only with network mode bridge; host mode exposes every listening port")
	}
	for i, p := range s.Ports {
		if p.ContainerPort == 0 || (p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp") {
			add(fmt.Sprintf("ports[%d]", i), "needs a container port and protocol tcp or udp")
		}
	}
	for _, c := range s.Capabilities {
		if !capRe.MatchString(c) {
			add("capabilities", "bad capability %q", c)
		}
	}
	switch {
	case s.User == "":
	case !caps.User:
		add("user", "running as another user is not supported by this runtime")
	default:
		uid, _, err := s.UIDGID()
		switch {
		case err != nil:
			add("user", "%v", err)
		case uid != 0 && len(s.Capabilities) > 0 && !caps.AmbientCapabilities:
			add("capabilities", "a non-root user cannot hold capabilities on this runtime; run as 0:0 with drop_capabilities")
		}
	}
	if s.ReadOnlyRootfs && !caps.ReadOnlyRootfs {
		add("read_only_rootfs", "not supported by this runtime")
	}
	switch s.Restart.Name {
	case "", RestartNo, RestartOnFailure, RestartAlways:
	default:
		add("restart.name", "must be no, on-failure or always")
	}
	if s.Restart.MaxRetries < 0 || (s.Restart.MaxRetries > 0 && s.Restart.Name != RestartOnFailure) {
		add("restart.max_retries", "must be >= 0 and only with on-failure")
	}
	switch {
	case s.MemoryBytes < 0:
		add("memory_bytes", "must be >= 0")
	case s.MemoryBytes > 0 && !caps.MemoryLimit:
		add("memory_bytes", "memory limits are not supported by this runtime")
	case s.MemoryBytes > 0 && s.MemoryBytes < 6<<20:
		add("memory_bytes", "must be at least 6 MiB")
	}
	if s.Health != nil {
		switch {
		case !caps.Health:
			add("health", "health checks are not supported by this runtime")
		case len(s.Health.Command) == 0:
			add("health.command", "required")
		}
	}
	return errs.Fields(bad...)
}

// ValidUser checks that User is uid:gid in numbers.
func (s Spec) ValidUser() error {
	_, _, err := s.UIDGID()
	return err
}

// UIDGID parses User, which must be uid:gid in numbers.
func (s Spec) UIDGID() (uid, gid uint32, err error) {
	if !userRe.MatchString(s.User) {
		return 0, 0, fmt.Errorf("must be uid:gid in numbers, not %q", s.User)
	}
	u, g, _ := strings.Cut(s.User, ":")
	uv, err := strconv.ParseUint(u, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("uid %q out of range", u)
	}
	gv, err := strconv.ParseUint(g, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("gid %q out of range", g)
	}
	return uint32(uv), uint32(gv), nil
}

// CapabilityNames returns Capabilities spelled CAP_X, as the kernel and
// OCI spell them.
func (s Spec) CapabilityNames() []string {
	out := make([]string, len(s.Capabilities))
	for i, c := range s.Capabilities {
		out[i] = "CAP_" + strings.TrimPrefix(c, "CAP_")
	}
	return out
}

// NetworkModeOr returns the spec's network mode, or def when unset.
func (s Spec) NetworkModeOr(def NetworkMode) NetworkMode {
	if s.NetworkMode == "" {
		return def
	}
	return s.NetworkMode
}

// OwnerLabels returns the labels that mark a workload as owned by node,
// merged over extra (a new map; extra is not changed).
func OwnerLabels(node string, extra map[string]string) map[string]string {
	l := make(map[string]string, len(extra)+2)
	for k, v := range extra {
		l[k] = v
	}
	l[LabelManaged] = "true"
	l[LabelNode] = node
	return l
}

// Owned reports whether labels mark a workload as owned by node.
func Owned(labels map[string]string, node string) bool {
	return labels[LabelManaged] == "true" && labels[LabelNode] == node
}

// ValidNode checks a node id before a runtime is built with it, since it
// ends up in labels and filters.
func ValidNode(node string) error {
	if !nameRe.MatchString(node) {
		return errs.Field("node", "must be 1-63 of a-z 0-9 . _ - starting with a letter or digit")
	}
	return nil
}
