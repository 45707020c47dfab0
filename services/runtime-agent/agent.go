// Package agent is vpn-agent's core: the presence of one host on the bus.
// It registers the node in the nodes bucket and heartbeats, answers
// request/reply commands on its own subjects (status, workloads, logs,
// restart, stats), turns runtime events into EVENTS messages, samples
// host and workload stats into STATS, and reconciles the node's Xray
// servers and their users from the servers and users buckets (package
// reconcile). It dials out to NATS and opens no
// port. Everything it publishes goes through a durable outbox, so while
// NATS is unreachable it keeps running what it runs, buffers, and
// republishes once NATS is back, deduplicated by message id.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/hostprobe"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/meter"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/reconcile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// Config is the agent's own configuration.
type Config struct {
	NodeID         string        `flag:"node-id" env:"VPN_NODE_ID" help:"node id (default: kept in the data dir, first derived from the hostname)"`
	Runtime        string        `flag:"runtime" env:"VPN_RUNTIME" help:"docker, containerd, process or auto"`
	DockerHost     string        `flag:"docker-host" env:"DOCKER_HOST" help:"Docker engine address"`
	ContainerdAddr string        `flag:"containerd-address" env:"VPN_CONTAINERD_ADDRESS" help:"containerd socket"`
	PublicAddr     string        `flag:"public-addr" env:"VPN_PUBLIC_ADDR" help:"address clients reach this host on (default: detected from the interfaces)"`
	Heartbeat      time.Duration `flag:"heartbeat" env:"VPN_HEARTBEAT" help:"heartbeat interval"`
	StatsInterval  time.Duration `flag:"stats-interval" env:"VPN_STATS_INTERVAL" help:"host and workload stats interval"`
	OutboxLimit    int           `flag:"outbox-limit" env:"VPN_OUTBOX_LIMIT" help:"messages kept on disk while NATS is unreachable"`
	// Xray servers.
	XrayBin              string        `flag:"xray-bin" env:"VPN_XRAY_BIN" help:"Xray executable (default: xray next to the agent, else in PATH); also imported as an image when the engine lacks --xray-image"`
	XrayUser             string        `flag:"xray-user" env:"VPN_XRAY_USER" help:"uid:gid Xray runs as, with only the capabilities it needs (0:0 keeps root)"`
	XrayImage            string        `flag:"xray-image" env:"VPN_XRAY_IMAGE" help:"Xray image for docker and containerd (default vpnfleet/xray:<pinned version>)"`
	AllowPrivateNetworks bool          `flag:"allow-private-networks" env:"VPN_ALLOW_PRIVATE_NETWORKS" help:"let VPN users reach loopback and private addresses through the servers (tests, labs)"`
	DriftInterval        time.Duration `flag:"drift-interval" env:"VPN_DRIFT_INTERVAL" help:"how often each server's users in Xray are checked against the desired ones"`
	UsageInterval        time.Duration `flag:"usage-interval" env:"VPN_USAGE_INTERVAL" help:"how often Xray's traffic counters are read into usage records"`
	XrayMaxReply         int           `flag:"xray-max-reply" env:"VPN_XRAY_MAX_REPLY" help:"largest reply in bytes read from Xray's API (user lists, counters); the default holds 1,000,000 users"`
	// XrayFirstReply is the reply size each Xray API call accepts at first
	// (default 4 MiB), doubled up to XrayMaxReply when a reply is larger.
	// Tests lower it to fill an inbound past it with few users.
	XrayFirstReply int
	// LimitCapabilities makes New drop, once the runtimes are open, every
	// capability the agent does not use on them (limitCapabilities). The
	// binaries set it (vpn-agent, vpnd); it changes the whole process, so
	// tests running agents in their own process leave it off.
	LimitCapabilities bool
}

// DefaultConfig returns the agent's defaults.
func DefaultConfig() Config {
	return Config{
		Runtime:        "auto",
		ContainerdAddr: DefaultContainerdAddr,
		Heartbeat:      5 * time.Second,
		StatsInterval:  10 * time.Second,
		OutboxLimit:    100_000,
		DriftInterval:  time.Minute,
		UsageInterval:  10 * time.Second,
		XrayMaxReply:   xray.DefaultMaxRecv,
		XrayUser:       reconcile.DefaultXrayUser,
	}
}

// Validate checks the configuration without touching the host.
func (c Config) Validate() error {
	var fe []errs.FieldError
	if c.NodeID != "" && !subject.ValidToken(c.NodeID) {
		fe = append(fe, errs.FieldError{Field: "node_id", Rule: "must be 1-128 characters of A-Z a-z 0-9 _ -"})
	}
	switch c.Runtime {
	case "docker", "containerd", "process", "auto":
	default:
		fe = append(fe, errs.FieldError{Field: "runtime", Rule: "must be docker, containerd, process or auto"})
	}
	if c.Heartbeat < 100*time.Millisecond {
		fe = append(fe, errs.FieldError{Field: "heartbeat", Rule: "must be at least 100ms"})
	}
	if c.StatsInterval < 100*time.Millisecond {
		fe = append(fe, errs.FieldError{Field: "stats_interval", Rule: "must be at least 100ms"})
	}
	if c.OutboxLimit < 1 {
		fe = append(fe, errs.FieldError{Field: "outbox_limit", Rule: "must be at least 1"})
	}
	if c.UsageInterval < 100*time.Millisecond {
		fe = append(fe, errs.FieldError{Field: "usage_interval", Rule: "must be at least 100ms"})
	}
	if c.DriftInterval < time.Second {
		fe = append(fe, errs.FieldError{Field: "drift_interval", Rule: "must be at least 1s"})
	}
	if c.XrayMaxReply < 1<<20 {
		fe = append(fe, errs.FieldError{Field: "xray_max_reply", Rule: "must be at least 1048576 (1 MiB)"})
	}
	if strings.ContainsAny(c.XrayImage, " \t\n") {
		fe = append(fe, errs.FieldError{Field: "xray_image", Rule: "must be an image reference"})
	}
	return errs.Fields(fe...)
}

// Agent is one running agent. Build it with New, run it with Run.
type Agent struct {
	cfg    Config
	env    svc.Env
	log    *slog.Logger
	rt     *runtime.Set
	outbox *outbox.Outbox
	probe  *hostprobe.Probe
	node   node.Node
	rec    *reconcile.Reconciler
	usage  *usageMeter
}

// Run opens the runtime and the outbox under env.DataDir and runs the agent
// until ctx ends. It is what vpn-agent and vpnd call.
func Run(ctx context.Context, cfg Config, env svc.Env) error {
	a, err := New(ctx, cfg, env, nil)
	if err != nil {
		return err
	}
	defer a.rt.Close()
	return a.Run(ctx)
}

// New prepares an agent. rt may be nil, in which case every runtime of the
// host is opened (OpenRuntimes), with the one cfg.Runtime names as the
// default, and owned: Run's caller closes them via Runtime(). A non-nil rt
// is the agent's only runtime.
func New(ctx context.Context, cfg Config, env svc.Env, rt runtime.Runtime) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.DataDir == "" {
		return nil, errs.Field("data_dir", "must be set for the agent")
	}
	id, err := nodeID(cfg.NodeID, env.DataDir)
	if err != nil {
		return nil, err
	}
	log := env.Log.With(logkey.Node, id)
	var rts *Runtimes
	if rt == nil {
		if rts, err = OpenRuntimes(ctx, cfg, id, env.DataDir, log); err != nil {
			return nil, err
		}
		if cfg.LimitCapabilities {
			var kinds []runtime.Kind
			for _, r := range rts.All() {
				kinds = append(kinds, r.Kind())
			}
			if err := limitCapabilities(log, kinds, rts.Addresses); err != nil {
				rts.Close()
				return nil, err
			}
		}
	} else {
		set, err := runtime.NewSet(rt.Kind(), rt)
		if err != nil {
			return nil, err
		}
		rts = &Runtimes{Set: set, Chosen: "given by the caller"}
	}
	rt = rts.Set
	ob, err := outbox.Open(filepath.Join(env.DataDir, "outbox"), cfg.OutboxLimit, log)
	if err != nil {
		rt.Close()
		return nil, err
	}
	hostname, _ := os.Hostname()
	addr, from := cfg.PublicAddr, "config"
	if addr == "" {
		addr, from = detectPublicAddr(), "detected"
	}
	a := &Agent{
		cfg: cfg, env: env, log: log, rt: rts.Set, outbox: ob,
		probe: hostprobe.New(id, env.DataDir),
		node: node.Node{
			ID: id, Hostname: hostname, PublicAddr: addr, PublicAddrFrom: from,
			Runtime: string(rt.Kind()), Capabilities: capabilityNames(rt.Capabilities()),
			RuntimeChosen: rts.Chosen, AgentVersion: version.Version, HeartbeatEvery: cfg.Heartbeat,
		},
	}
	for _, r := range rts.All() {
		info := node.RuntimeInfo{Kind: string(r.Kind()), Capabilities: capabilityNames(r.Capabilities()), Address: rts.Addresses[r.Kind()]}
		if v, err := r.Version(ctx); err == nil {
			info.Version = v
		}
		a.node.Runtimes = append(a.node.Runtimes, info)
	}
	a.node.RuntimeVersion = a.node.Runtimes[0].Version
	m, err := meter.Open(filepath.Join(env.DataDir, "meter"), id, ob, log)
	if err != nil {
		rt.Close()
		return nil, err
	}
	a.usage = &usageMeter{m: m, log: log}
	if a.rec, err = a.newReconciler(); err != nil {
		rt.Close()
		return nil, err
	}
	if env.Metrics != nil {
		if err := env.Metrics.Register(collector{a: a}); err != nil {
			rt.Close()
			return nil, fmt.Errorf("registering agent metrics: %w", err)
		}
	}
	log.Info("agent runtime selected", logkey.Runtime, rt.Kind(), logkey.RuntimeVersion, a.node.RuntimeVersion,
		logkey.Runtimes, strings.Join(a.node.RuntimeKinds(), ","), logkey.Detail, rts.Chosen, logkey.PublicAddr, addr)
	return a, nil
}

// newReconciler prepares the reconciler of the node's Xray servers, with
// its files under <data dir>/xray.
func (a *Agent) newReconciler() (*reconcile.Reconciler, error) {
	dir, err := filepath.Abs(filepath.Join(a.env.DataDir, "xray"))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "data dir %s", a.env.DataDir)
	}
	image := a.cfg.XrayImage
	if image == "" {
		image = DefaultXrayImage()
	}
	bin := xrayBinary(a.cfg.XrayBin)
	if bin == "" {
		a.log.Warn("no xray binary found: set --xray-bin (servers on the process runtime cannot start)")
	} else {
		a.node.Capabilities = append(a.node.Capabilities, a.xrayCapabilities(bin)...)
	}
	return reconcile.New(reconcile.Config{
		Node: a.node.ID, PublicHost: a.node.PublicAddr, DataDir: dir,
		XrayBin: bin, XrayImage: image, XrayUser: a.cfg.XrayUser, AllowPrivateNetworks: a.cfg.AllowPrivateNetworks,
		DriftInterval: a.cfg.DriftInterval, Retiring: a.usage.retiring, Log: a.log,
		XrayLimits: xray.Limits{Recv: a.cfg.XrayFirstReply, MaxRecv: a.cfg.XrayMaxReply},
	}, a.rt, reconcile.KVStatus{JS: a.env.JS}, a.enqueueEvent)
}

// Capabilities of the node's Xray, in the node record.
const (
	// CapCutSessions: a user removed from a server (disabled, limited,
	// expired, deleted, moved, credentials changed) loses the connections
	// it has open, not only new ones.
	CapCutSessions = "cut_sessions"
	// CapLiveUsage: traffic is counted while a connection is open, not
	// when it closes.
	CapLiveUsage = "live_usage"
)

// xrayCapabilities probes the Xray executable bin for the session
// extension and says loudly when it is missing.
func (a *Agent) xrayCapabilities(bin string) []string {
	ok, err := xray.HasSessionExtension(context.Background(), bin)
	switch {
	case err != nil:
		a.log.Warn("cannot tell whether xray can end sessions", logkey.Path, bin, logkey.Err, err)
		return nil
	case !ok:
		a.log.Warn("this xray is a stock build: removed users keep the connections they have open, and long transfers are counted when they end; build vpn-xray with `make xray`", logkey.Path, bin)
		return nil
	}
	return []string{CapCutSessions, CapLiveUsage}
}

// DefaultXrayImage is the image container runtimes run Xray from unless
// --xray-image says otherwise: the FROM-scratch image `make xray-image`
// builds, tagged with the pinned Xray-core version.
func DefaultXrayImage() string { return "vpnfleet/xray:" + xray.Version() }

// xrayBinary resolves the Xray executable: the configured path, else
// "xray" next to the agent's own executable, else in PATH; "" when there
// is none.
func xrayBinary(configured string) string {
	if configured != "" {
		if abs, err := filepath.Abs(configured); err == nil {
			return abs
		}
		return configured
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "xray")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath("xray"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}

// Reconciler is the reconciler of this node's Xray servers; its Servers
// method lists the running ones (the usage meter reads their counters).
func (a *Agent) Reconciler() *reconcile.Reconciler { return a.rec }

// Runtime is every runtime the agent drives, as one: see runtime.Set. Its
// Kind is the node's default.
func (a *Agent) Runtime() runtime.Runtime { return a.rt }

// Runtimes is every runtime the agent drives.
func (a *Agent) Runtimes() *runtime.Set { return a.rt }

// NodeID is this agent's node id.
func (a *Agent) NodeID() string { return a.node.ID }

// Buffered is the number of messages waiting for NATS.
func (a *Agent) Buffered() int { return a.outbox.Len() }

// Run runs the agent's loops until ctx ends, then marks the node stopped.
func (a *Agent) Run(ctx context.Context) error {
	a.node.StartedAt = time.Now().UTC()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.outbox.Run(gctx, a.env.JS) })
	g.Go(func() error { return a.heartbeat(gctx) })
	g.Go(func() error { return a.forwardEvents(gctx) })
	g.Go(func() error { return a.sampleStats(gctx) })
	g.Go(func() error { return a.serveCommands(gctx) })
	g.Go(func() error { return a.rec.Run(gctx) })
	g.Go(func() error { return a.rec.WatchView(gctx, a.env.JS) })
	g.Go(func() error { return a.rec.FollowRuntime(gctx) })
	g.Go(func() error { return a.usage.run(gctx, a.cfg.UsageInterval, a.rec.Servers) })
	if err := a.announce(); err != nil {
		a.log.Warn("announcing node", logkey.Err, err)
	}
	err := g.Wait()
	a.markStopped(ctx)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// NodeID returns the id of the node an agent with configured id and
// dataDir runs as (see nodeID), for callers that must know it before the
// agent starts (its credential is the node's).
func NodeID(configured, dataDir string) (string, error) { return nodeID(configured, dataDir) }

// nodeID returns the configured id, or the one kept in the data dir, or
// derives one from the hostname and keeps it, so the id is stable across
// restarts.
func nodeID(configured, dataDir string) (string, error) {
	if configured != "" {
		return configured, nil
	}
	path := filepath.Join(dataDir, "node-id")
	if data, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(data))
		if !subject.ValidToken(id) {
			return "", errs.New(errs.Invalid, "node id %q in %s: must be 1-128 characters of A-Z a-z 0-9 _ -", id, path)
		}
		return id, nil
	}
	host, _ := os.Hostname()
	id := sanitizeToken(host)
	if id == "" {
		id = "node"
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("creating data dir: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", errs.Wrap(errs.Invalid, err, "keeping node id in %s", path)
	}
	return id, nil
}

func sanitizeToken(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.':
			b.WriteRune('-')
		}
	}
	out := b.String()
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

func capabilityNames(c runtime.Capabilities) []string {
	var out []string
	add := func(ok bool, name string) {
		if ok {
			out = append(out, name)
		}
	}
	add(c.Images, "images")
	add(c.MemoryLimit, "memory_limit")
	add(c.OOMEvents, "oom_events")
	add(c.Mounts, "mounts")
	add(c.Health, "health")
	for _, m := range c.NetworkModes {
		out = append(out, "network_"+string(m))
	}
	return out
}
