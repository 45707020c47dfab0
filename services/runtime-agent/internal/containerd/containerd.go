// Package containerd is the runtime for hosts with containerd, through the
// containerd v2 Go client, in a namespace of its own ("vpn" by default) so
// nothing of Docker's or Kubernetes' is ever listed.
//
// Things containerd does not do by itself, and how this package does them:
//
//   - Snapshotter: overlayfs is preferred. Some hosts cannot mount overlay
//     where containerd keeps its snapshots (Docker on fuse-overlayfs, rootless
//     or nested setups); New probes by mounting a two-layer overlay
//     snapshot and falls back to "native" (plain copies: slower to unpack,
//     same behaviour) when the mount fails. Options.Snapshotter forces one.
//   - Networking: the host's network namespace by default (a VPN server needs
//     the host's addresses; no CNI is needed); NetworkNone gives a fresh
//     namespace with loopback only. Bridge and published ports are not
//     offered.
//   - Logs: the shim writes the task's stdout and stderr straight into
//     <data dir>/logs/<namespace>/<id>.log (merged, no timestamps); Logs
//     tails and follows that file, and it survives agent restarts.
//   - Restart policy: containerd has none the agent can rely on (the restart
//     monitor plugin is optional and polls every 10s), so the runtime
//     applies it from the /tasks/exit events it subscribes to, with
//     backoff, and keeps its bookkeeping (policy, restart count, user stop,
//     OOM) in container labels under "vpnfleet.rt.", which survive agent
//     restarts and are hidden from Workload.Labels. A new Runtime restarts
//     owned tasks that exited while no agent was watching.
//   - Events: one subscription to /tasks/start, /tasks/exit and /tasks/oom of
//     the namespace, made active before New returns (it waits for a probe
//     event it publishes itself), fanned out to Events subscribers.
//   - Stats: task metrics (cgroup v1 or v2). Network counters are zero:
//     host-network tasks have no counters of their own.
//   - Health checks are not offered.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	coreevents "github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/imagetar"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/logfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Defaults.
const (
	// DefaultAddress is containerd's usual socket. Docker's bundled
	// containerd listens on /var/run/docker/containerd/containerd.sock.
	DefaultAddress   = "/run/containerd/containerd.sock"
	DefaultNamespace = "vpn"
)

// Labels the runtime keeps its own bookkeeping in.
const (
	labelPrefix   = "vpnfleet.rt."
	labelPolicy   = labelPrefix + "restart"
	labelRetries  = labelPrefix + "max-retries"
	labelRestarts = labelPrefix + "restarts"
	labelStopped  = labelPrefix + "stopped"
	labelOOM      = labelPrefix + "oom"
	labelStarted  = labelPrefix + "started"
	probeTopic    = "/vpnfleet/probe"
)

// Options configures a Runtime.
type Options struct {
	// Node is the agent's node id; it goes into the owner labels.
	Node string
	// Address is containerd's socket; DefaultAddress when empty.
	Address string
	// Namespace isolates the agent's containers; DefaultNamespace when
	// empty.
	Namespace string
	// Snapshotter forces a snapshotter; empty probes overlayfs and falls
	// back to native.
	Snapshotter string
	// DataDir holds the task logs.
	DataDir string
	Logger  *slog.Logger
	// Backoff is the first delay of a policy restart, doubled per restart
	// up to MaxBackoff. Defaults 100ms and 10s.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// Runtime drives containerd. It is safe for concurrent use.
type Runtime struct {
	node, ns, snapshotter, dir string
	c                          *client.Client
	log                        *slog.Logger
	hub                        *runtime.Hub
	backoff, maxBack           time.Duration

	// loop is the context of the event loop and restart timers; cancel
	// ends them, wg waits for them.
	loop   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	restarting map[string]bool
	cpu        map[string]cpuSample
}

var caps = runtime.Capabilities{
	User:                true,
	ReadOnlyRootfs:      true,
	AmbientCapabilities: true,
	Images:              true,
	MemoryLimit:         true,
	OOMEvents:           true,
	Mounts:              true,
	NetworkModes:        []runtime.NetworkMode{runtime.NetworkHost, runtime.NetworkNone},
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to containerd, picks the snapshotter, and starts watching
// task events. An unreachable socket is errs.Unavailable.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if err := runtime.ValidNode(opts.Node); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, errs.Field("data_dir", "required")
	}
	if opts.Address == "" {
		opts.Address = DefaultAddress
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = 10 * time.Second
	}
	if _, err := os.Stat(opts.Address); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reaching containerd at %s", opts.Address)
	}
	c, err := client.New(opts.Address, client.WithDefaultNamespace(opts.Namespace), client.WithTimeout(5*time.Second))
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "connecting to containerd at %s", opts.Address)
	}
	ctx = namespaces.WithNamespace(ctx, opts.Namespace)
	if _, err := c.Version(ctx); err != nil {
		c.Close()
		return nil, errs.Wrap(errs.Unavailable, err, "reaching containerd at %s", opts.Address)
	}
	loop, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), opts.Namespace))
	r := &Runtime{
		node: opts.Node, ns: opts.Namespace, dir: opts.DataDir, c: c,
		log:     opts.Logger.With(logkey.Runtime, string(runtime.KindContainerd)),
		hub:     runtime.NewHub(opts.Logger),
		backoff: opts.Backoff, maxBack: opts.MaxBackoff,
		loop: loop, cancel: cancel,
		restarting: map[string]bool{},
		cpu:        map[string]cpuSample{},
	}
	r.snapshotter = opts.Snapshotter
	if r.snapshotter == "" {
		r.snapshotter = "overlayfs"
		if err := probeSnapshotter(ctx, c, r.snapshotter); err != nil {
			r.log.Warn("overlayfs snapshots cannot be mounted here; using native", logkey.Err, err)
			r.snapshotter = "native"
		}
	}
	if err := r.watch(ctx); err != nil {
		r.Close()
		return nil, err
	}
	r.recover(ctx)
	return r, nil
}

// probeSnapshotter mounts a two-layer snapshot (the case that needs a real
// overlay mount) to see whether name works on this host.
func probeSnapshotter(ctx context.Context, c *client.Client, name string) (err error) {
	// Without a lease, the garbage collector may take the uncommitted
	// snapshots between two calls.
	ctx, done, err := c.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("taking lease for probe: %w", err)
	}
	defer done(ctx) // the lease expires anyway
	sn := c.SnapshotService(name)
	key := fmt.Sprintf("vpnfleet-probe-%d", time.Now().UnixNano())
	if _, err := sn.Prepare(ctx, key+"-lower", ""); err != nil {
		return fmt.Errorf("preparing probe snapshot: %w", err)
	}
	defer sn.Remove(ctx, key+"-lower") // gone after commit
	if err := sn.Commit(ctx, key+"-base", key+"-lower"); err != nil {
		return fmt.Errorf("committing probe snapshot: %w", err)
	}
	defer sn.Remove(ctx, key+"-base") // best-effort cleanup
	mounts, err := sn.Prepare(ctx, key+"-upper", key+"-base")
	if err != nil {
		return fmt.Errorf("preparing probe snapshot: %w", err)
	}
	defer sn.Remove(ctx, key+"-upper") // removed before base
	dir, err := os.MkdirTemp("", "vpnfleet-probe-")
	if err != nil {
		return fmt.Errorf("making probe mount point: %w", err)
	}
	defer os.Remove(dir)
	if err := mount.All(mounts, dir); err != nil {
		return fmt.Errorf("mounting probe snapshot: %w", err)
	}
	if err := mount.UnmountAll(dir, 0); err != nil {
		return fmt.Errorf("unmounting probe snapshot: %w", err)
	}
	return nil
}

// Snapshotter tells which snapshotter New settled on.
func (r *Runtime) Snapshotter() string { return r.snapshotter }

// Client exposes the containerd client, for tests that act behind the
// runtime's back.
func (r *Runtime) Client() *client.Client { return r.c }

func (r *Runtime) nsCtx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.ns)
}

func (r *Runtime) logPath(id string) string {
	return filepath.Join(r.dir, "logs", r.ns, id+".log")
}

// classify gives a containerd error its errs class, keeping the cause.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	c := errs.Internal
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf(format+": %w", append(args, err)...)
	case cerrdefs.IsNotFound(err):
		c = errs.NotFound
	case cerrdefs.IsInvalidArgument(err):
		c = errs.Invalid
	case cerrdefs.IsAlreadyExists(err), cerrdefs.IsConflict(err), cerrdefs.IsFailedPrecondition(err):
		c = errs.Conflict
	case cerrdefs.IsUnavailable(err):
		c = errs.Unavailable
	}
	return errs.Wrap(c, err, format, args...)
}

// Kind implements runtime.Runtime.
func (r *Runtime) Kind() runtime.Kind { return runtime.KindContainerd }

// Version reports containerd's version and the snapshotter in use.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.c.Version(r.nsCtx(ctx))
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "reading containerd version")
	}
	return fmt.Sprintf("containerd %s (snapshotter %s, namespace %s)", v.Version, r.snapshotter, r.ns), nil
}

// Capabilities implements runtime.Runtime.
func (r *Runtime) Capabilities() runtime.Capabilities { return caps }

// EnsureImage makes sure ref is present and unpacked, pulling it when it
// is not. Progress is reported per fetched blob.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, progress func(runtime.Progress)) error {
	ctx = r.nsCtx(ctx)
	name, err := imagetar.Normalize(ref)
	if err != nil {
		return err
	}
	img, err := r.c.GetImage(ctx, name)
	if err == nil {
		return r.unpack(ctx, img)
	}
	if !cerrdefs.IsNotFound(err) {
		return classify(err, "looking up image %s", ref)
	}
	opts := []client.RemoteOpt{client.WithPullUnpack, client.WithPullSnapshotter(r.snapshotter)}
	if progress != nil {
		opts = append(opts, client.WithImageHandler(imageHandler(progress)))
	}
	if _, err := r.c.Pull(ctx, name, opts...); err != nil {
		if cerrdefs.IsNotFound(err) {
			return errs.Wrap(errs.NotFound, err, "pulling image %s", ref)
		}
		return errs.Wrap(errs.Unavailable, err, "pulling image %s", ref)
	}
	return nil
}

func (r *Runtime) unpack(ctx context.Context, img client.Image) error {
	ok, err := img.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return classify(err, "checking image %s", img.Name())
	}
	if ok {
		return nil
	}
	if err := img.Unpack(ctx, r.snapshotter); err != nil {
		return classify(err, "unpacking image %s", img.Name())
	}
	return nil
}

// ImportImage imports an OCI layout or docker-archive tarball and unpacks
// what it held.
func (r *Runtime) ImportImage(ctx context.Context, rd io.Reader) ([]string, error) {
	ctx = r.nsCtx(ctx)
	imgs, err := r.c.Import(ctx, rd)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "importing image tarball")
	}
	var refs []string
	for _, i := range imgs {
		if err := r.unpack(ctx, client.NewImage(r.c, i)); err != nil {
			return nil, err
		}
		refs = append(refs, i.Name)
	}
	if len(refs) == 0 {
		return nil, errs.New(errs.Invalid, "importing image tarball: it named no image")
	}
	return refs, nil
}

// Create makes the container and its snapshot; if any step fails, what was
// made is removed again.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (_ string, retErr error) {
	if err := spec.Validate(caps); err != nil {
		return "", err
	}
	ctx = r.nsCtx(ctx)
	name, err := imagetar.Normalize(spec.Image)
	if err != nil {
		return "", errs.Field("image", "must be a name:tag reference")
	}
	if _, err := r.c.LoadContainer(ctx, spec.Name); err == nil {
		return "", errs.New(errs.Conflict, "workload %s already exists", spec.Name)
	}
	img, err := r.c.GetImage(ctx, name)
	if err != nil {
		return "", classify(err, "creating container %s: image %s", spec.Name, spec.Image)
	}
	if err := r.unpack(ctx, img); err != nil {
		return "", err
	}

	// containerd applies no seccomp profile of its own accord (Docker
	// does): every workload gets containerd's default one.
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img), seccomp.WithDefaultProfile()}
	if len(spec.Command) > 0 {
		specOpts = append(specOpts, oci.WithImageConfigArgs(img, spec.Command))
	}
	if len(spec.Env) > 0 {
		env := make([]string, 0, len(spec.Env))
		for _, k := range sortedKeys(spec.Env) {
			env = append(env, k+"="+spec.Env[k])
		}
		specOpts = append(specOpts, oci.WithEnv(env))
	}
	if spec.NetworkModeOr(runtime.NetworkHost) == runtime.NetworkHost {
		specOpts = append(specOpts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostHostsFile, oci.WithHostResolvconf)
	}
	if spec.MemoryBytes > 0 {
		specOpts = append(specOpts, oci.WithMemoryLimit(uint64(spec.MemoryBytes)), oci.WithMemorySwap(spec.MemoryBytes))
	}
	switch {
	case spec.DropCapabilities:
		// Every set holds exactly the kept ones; ambient too, so that a
		// non-root user really has them after exec.
		kept := spec.CapabilityNames()
		specOpts = append(specOpts, oci.WithCapabilities(kept), oci.WithAmbientCapabilities(kept))
	case len(spec.Capabilities) > 0:
		specOpts = append(specOpts, oci.WithAddedCapabilities(spec.CapabilityNames()))
	}
	if spec.User != "" {
		uid, gid, _ := spec.UIDGID() // checked by Validate
		specOpts = append(specOpts, oci.WithUIDGID(uid, gid))
	}
	if spec.NoNewPrivileges {
		specOpts = append(specOpts, oci.WithNoNewPrivileges)
	}
	if spec.ReadOnlyRootfs {
		specOpts = append(specOpts, oci.WithRootFSReadonly())
	}
	if len(spec.Mounts) > 0 {
		var ms []specs.Mount
		for _, m := range spec.Mounts {
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			ms = append(ms, specs.Mount{Type: "bind", Source: m.Source, Destination: m.Target, Options: []string{"rbind", mode}})
		}
		specOpts = append(specOpts, oci.WithMounts(ms))
	}

	labels := runtime.OwnerLabels(r.node, spec.Labels)
	policy := spec.Restart.Name
	if policy == "" {
		policy = runtime.RestartNo
	}
	labels[labelPolicy] = string(policy)
	labels[labelRetries] = strconv.Itoa(spec.Restart.MaxRetries)

	snapshot := spec.Name + "-rootfs"
	defer func() {
		if retErr != nil {
			// NewContainer may fail after the snapshot was made.
			if err := r.c.SnapshotService(r.snapshotter).Remove(ctx, snapshot); err != nil && !cerrdefs.IsNotFound(err) {
				r.log.Warn("removing snapshot of failed create", logkey.Workload, spec.Name, logkey.Err, err)
			}
		}
	}()
	_, err = r.c.NewContainer(ctx, spec.Name,
		client.WithImage(img),
		client.WithSnapshotter(r.snapshotter),
		client.WithNewSnapshot(snapshot, img),
		client.WithNewSpec(specOpts...),
		client.WithContainerLabels(labels),
	)
	if err != nil {
		return "", classify(err, "creating container %s", spec.Name)
	}
	return spec.Name, nil
}

// owned loads id and fails with NotFound unless this node owns it.
func (r *Runtime) owned(ctx context.Context, id string) (client.Container, map[string]string, error) {
	c, err := r.c.LoadContainer(ctx, id)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return nil, nil, classify(err, "loading container %s", id)
	}
	var labels map[string]string
	if err == nil {
		labels, err = c.Labels(ctx)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return nil, nil, classify(err, "reading labels of %s", id)
		}
	}
	if err != nil || !runtime.Owned(labels, r.node) {
		return nil, nil, errs.New(errs.NotFound, "workload %q is not one of node %s's containers", id, r.node)
	}
	return c, labels, nil
}

// setLabels merges labels into the container's bookkeeping labels.
func setLabels(ctx context.Context, c client.Container, labels map[string]string) error {
	if _, err := c.SetLabels(ctx, labels); err != nil {
		return classify(err, "updating labels of %s", c.ID())
	}
	return nil
}

// Start starts a new task; a previous, stopped task is deleted first.
func (r *Runtime) Start(ctx context.Context, id string) error {
	ctx = r.nsCtx(ctx)
	c, _, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	return r.start(ctx, c)
}

// start runs a new task of c, clearing the stop and OOM marks.
func (r *Runtime) start(ctx context.Context, c client.Container) error {
	id := c.ID()
	if t, err := c.Task(ctx, nil); err == nil {
		st, err := t.Status(ctx)
		if err != nil {
			return classify(err, "reading task of %s", id)
		}
		if st.Status == client.Running || st.Status == client.Paused {
			return nil
		}
		if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !cerrdefs.IsNotFound(err) {
			return classify(err, "deleting old task of %s", id)
		}
	} else if !cerrdefs.IsNotFound(err) {
		return classify(err, "loading task of %s", id)
	}
	if err := os.MkdirAll(filepath.Dir(r.logPath(id)), 0o750); err != nil {
		return fmt.Errorf("making log dir: %w", err)
	}
	labels := map[string]string{labelStopped: "", labelOOM: "", labelStarted: time.Now().UTC().Format(time.RFC3339Nano)}
	if err := setLabels(ctx, c, labels); err != nil {
		return err
	}
	t, err := c.NewTask(ctx, cio.LogFile(r.logPath(id)))
	if err != nil {
		return classify(err, "creating task of %s", id)
	}
	r.mu.Lock()
	delete(r.cpu, id)
	r.mu.Unlock()
	if err := t.Start(ctx); err != nil {
		if _, derr := t.Delete(ctx, client.WithProcessKill); derr != nil {
			r.log.Warn("deleting task that failed to start", logkey.Workload, id, logkey.Err, derr)
		}
		return classify(err, "starting task of %s", id)
	}
	return nil
}

// Stop signals SIGTERM, SIGKILL after timeout, and waits for the exit. The
// stopped task is kept so Inspect can report its exit code.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	ctx = r.nsCtx(ctx)
	c, _, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	// Mark first, so the exit this causes is not restarted by policy.
	if err := setLabels(ctx, c, map[string]string{labelStopped: "true"}); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.restarting, id)
	r.mu.Unlock()
	return r.kill(ctx, c, timeout)
}

func (r *Runtime) kill(ctx context.Context, c client.Container, timeout time.Duration) error {
	id := c.ID()
	t, err := c.Task(ctx, nil)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify(err, "loading task of %s", id)
	}
	st, err := t.Status(ctx)
	if err != nil {
		return classify(err, "reading task of %s", id)
	}
	if st.Status != client.Running && st.Status != client.Paused {
		return nil
	}
	exited, err := t.Wait(ctx)
	if err != nil {
		return classify(err, "waiting for task of %s", id)
	}
	if timeout > 0 {
		if err := t.Kill(ctx, syscall.SIGTERM); err != nil && !cerrdefs.IsNotFound(err) {
			return classify(err, "signalling task of %s", id)
		}
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("stopping %s: %w", id, ctx.Err())
		case <-timer.C:
		}
	}
	if err := t.Kill(ctx, syscall.SIGKILL, client.WithKillAll); err != nil && !cerrdefs.IsNotFound(err) {
		return classify(err, "killing task of %s", id)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("killing %s: %w", id, ctx.Err())
	}
}

// Restart stops the task and starts a new one.
func (r *Runtime) Restart(ctx context.Context, id string, timeout time.Duration) error {
	if err := r.Stop(ctx, id, timeout); err != nil {
		return err
	}
	if err := r.Start(ctx, id); err != nil {
		return err
	}
	r.hub.Publish(runtime.Event{Kind: runtime.EventRestart, ID: id, Name: id, Time: time.Now()})
	return nil
}

// Remove kills the task and deletes it, the container, its snapshot and
// its log.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	ctx = r.nsCtx(ctx)
	c, _, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	if err := setLabels(ctx, c, map[string]string{labelStopped: "true"}); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.restarting, id)
	delete(r.cpu, id)
	r.mu.Unlock()
	if err := r.kill(ctx, c, 0); err != nil {
		return err
	}
	if t, err := c.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !cerrdefs.IsNotFound(err) {
			return classify(err, "deleting task of %s", id)
		}
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !cerrdefs.IsNotFound(err) {
		return classify(err, "deleting container %s", id)
	}
	if err := os.Remove(r.logPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing log of %s: %w", id, err)
	}
	return nil
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Workload, error) {
	ctx = r.nsCtx(ctx)
	c, labels, err := r.owned(ctx, id)
	if err != nil {
		return runtime.Workload{}, err
	}
	return r.describe(ctx, c, labels)
}

func (r *Runtime) describe(ctx context.Context, c client.Container, labels map[string]string) (runtime.Workload, error) {
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return runtime.Workload{}, classify(err, "reading container %s", c.ID())
	}
	w := runtime.Workload{
		ID: c.ID(), Name: c.ID(), Image: info.Image, CreatedAt: info.CreatedAt,
		Labels: map[string]string{}, State: runtime.StateCreated,
		OOMKilled: labels[labelOOM] == "true",
	}
	for k, v := range labels {
		if !strings.HasPrefix(k, labelPrefix) {
			w.Labels[k] = v
		}
	}
	w.RestartCount, _ = strconv.Atoi(labels[labelRestarts])
	w.StartedAt, _ = time.Parse(time.RFC3339Nano, labels[labelStarted])
	t, err := c.Task(ctx, nil)
	switch {
	case cerrdefs.IsNotFound(err):
	case err != nil:
		return runtime.Workload{}, classify(err, "loading task of %s", c.ID())
	default:
		st, err := t.Status(ctx)
		if err != nil && !cerrdefs.IsNotFound(err) {
			return runtime.Workload{}, classify(err, "reading task of %s", c.ID())
		}
		switch st.Status {
		case client.Running, client.Paused, client.Pausing:
			w.State, w.PID = runtime.StateRunning, int(t.Pid())
		case client.Stopped:
			w.State, w.ExitCode, w.FinishedAt = runtime.StateExited, int(st.ExitStatus), st.ExitTime
		}
	}
	r.mu.Lock()
	if r.restarting[c.ID()] && w.State != runtime.StateRunning {
		w.State = runtime.StateRestarting
	}
	r.mu.Unlock()
	return w, nil
}

func (r *Runtime) ownerFilter() string {
	return fmt.Sprintf(`labels.%q==true,labels.%q==%q`, runtime.LabelManaged, runtime.LabelNode, r.node)
}

// List implements runtime.Runtime; containerd filters by the owner labels.
func (r *Runtime) List(ctx context.Context) ([]runtime.Workload, error) {
	ctx = r.nsCtx(ctx)
	cs, err := r.c.Containers(ctx, r.ownerFilter())
	if err != nil {
		return nil, classify(err, "listing containers")
	}
	out := make([]runtime.Workload, 0, len(cs))
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if cerrdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, classify(err, "reading labels of %s", c.ID())
		}
		if !runtime.Owned(labels, r.node) {
			continue
		}
		w, err := r.describe(ctx, c, labels)
		if errors.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Logs tails and follows the task's log file.
func (r *Runtime) Logs(ctx context.Context, id string, opts runtime.LogOptions) (*runtime.Stream[runtime.LogLine], error) {
	c, _, err := r.owned(r.nsCtx(ctx), id)
	if err != nil {
		return nil, err
	}
	alive := func() bool {
		ctx, cancel := context.WithTimeout(r.nsCtx(context.Background()), 5*time.Second)
		defer cancel()
		t, err := c.Task(ctx, nil)
		if err != nil {
			return false
		}
		st, err := t.Status(ctx)
		return err == nil && st.Status == client.Running
	}
	return logfile.Stream(ctx, r.logPath(id), opts, alive), nil
}

// Events implements runtime.Runtime.
func (r *Runtime) Events(ctx context.Context) (*runtime.Stream[runtime.Event], error) {
	return r.hub.Subscribe(ctx), nil
}

// Close stops watching events and pending restarts; tasks keep running.
func (r *Runtime) Close() error {
	r.cancel()
	r.wg.Wait()
	return r.c.Close()
}

// watch subscribes to the namespace's task events and runs the event loop.
// It returns once the subscription has delivered its own probe event, so
// no event after New is missed.
func (r *Runtime) watch(ctx context.Context) error {
	envelopes, errc := r.c.Subscribe(r.loop,
		fmt.Sprintf(`namespace==%q,topic~="^/tasks/(start|exit|oom)$"`, r.ns),
		fmt.Sprintf(`namespace==%q,topic==%q`, r.ns, probeTopic),
	)
	probe := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	ready := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.eventLoop(envelopes, errc, probe, ready)
	}()
	// Publish until the loop sees a probe: the subscription may take a
	// moment to reach the server.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if err := r.c.EventService().Publish(ctx, probeTopic, &apievents.TaskStart{ContainerID: probe}); err != nil {
			return classify(err, "publishing probe event")
		}
		select {
		case <-ready:
			return nil
		case <-deadline.C:
			return errs.New(errs.Unavailable, "containerd event subscription did not become active")
		case <-tick.C:
		}
	}
}

func (r *Runtime) eventLoop(envelopes <-chan *coreevents.Envelope, errc <-chan error, probe string, ready chan struct{}) {
	readyOnce := sync.OnceFunc(func() { close(ready) })
	for {
		select {
		case <-r.loop.Done():
			return
		case err := <-errc:
			if err != nil && r.loop.Err() == nil {
				r.log.Error("containerd event subscription ended", logkey.Err, err)
			}
			return
		case env := <-envelopes:
			if env == nil {
				continue
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				r.log.Warn("decoding containerd event", logkey.Topic, env.Topic, logkey.Err, err)
				continue
			}
			if env.Topic == probeTopic {
				if s, ok := v.(*apievents.TaskStart); ok && s.ContainerID == probe {
					readyOnce()
				}
				continue
			}
			r.handle(v, env.Timestamp)
		}
	}
}

// handle turns one task event of an owned container into a runtime event
// and applies the restart policy on exits.
func (r *Runtime) handle(v any, at time.Time) {
	ctx, cancel := context.WithTimeout(r.loop, 10*time.Second)
	defer cancel()
	var ev runtime.Event
	switch e := v.(type) {
	case *apievents.TaskStart:
		ev = runtime.Event{Kind: runtime.EventStart, ID: e.ContainerID}
	case *apievents.TaskExit:
		if e.ID != "" && e.ID != e.ContainerID {
			return // an exec'd process, not the workload
		}
		ev = runtime.Event{Kind: runtime.EventDie, ID: e.ContainerID, ExitCode: int(e.ExitStatus)}
	case *apievents.TaskOOM:
		ev = runtime.Event{Kind: runtime.EventOOM, ID: e.ContainerID}
	default:
		return
	}
	ev.Name, ev.Time = ev.ID, at
	c, labels, err := r.owned(ctx, ev.ID)
	if err != nil {
		return // not ours, or removed meanwhile
	}
	if ev.Kind == runtime.EventOOM {
		if err := setLabels(ctx, c, map[string]string{labelOOM: "true"}); err != nil {
			r.log.Warn("recording oom", logkey.Workload, ev.ID, logkey.Err, err)
		}
	}
	r.hub.Publish(ev)
	if ev.Kind == runtime.EventDie {
		r.maybeRestart(c, labels, ev.ExitCode)
	}
}

// maybeRestart schedules a restart when the policy asks for one.
func (r *Runtime) maybeRestart(c client.Container, labels map[string]string, code int) {
	if labels[labelStopped] == "true" {
		return
	}
	restarts, _ := strconv.Atoi(labels[labelRestarts])
	retries, _ := strconv.Atoi(labels[labelRetries])
	switch runtime.RestartName(labels[labelPolicy]) {
	case runtime.RestartAlways:
	case runtime.RestartOnFailure:
		if code == 0 || retries > 0 && restarts >= retries {
			return
		}
	default:
		return
	}
	id := c.ID()
	delay := r.backoff
	for i := 0; i < restarts && delay < r.maxBack; i++ {
		delay *= 2
	}
	delay = min(delay, r.maxBack)
	r.mu.Lock()
	r.restarting[id] = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-r.loop.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		still := r.restarting[id]
		delete(r.restarting, id)
		r.mu.Unlock()
		if !still {
			return // stopped or removed meanwhile
		}
		ctx, cancel := context.WithTimeout(r.loop, 30*time.Second)
		defer cancel()
		c, labels, err := r.owned(ctx, id)
		if err != nil || labels[labelStopped] == "true" {
			return
		}
		if err := setLabels(ctx, c, map[string]string{labelRestarts: strconv.Itoa(restarts + 1)}); err != nil {
			r.log.Error("counting restart", logkey.Workload, id, logkey.Err, err)
			return
		}
		if err := r.start(ctx, c); err != nil {
			r.log.Error("restarting by policy", logkey.Workload, id, logkey.Err, err)
			return
		}
		r.hub.Publish(runtime.Event{Kind: runtime.EventRestart, ID: id, Name: id, Time: time.Now()})
	}()
}

// recover applies the restart policy to owned tasks that exited while no
// agent was watching.
func (r *Runtime) recover(ctx context.Context) {
	cs, err := r.c.Containers(ctx, r.ownerFilter())
	if err != nil {
		r.log.Warn("listing containers to recover", logkey.Err, err)
		return
	}
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if err != nil || !runtime.Owned(labels, r.node) {
			continue
		}
		t, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := t.Status(ctx)
		if err != nil || st.Status != client.Stopped {
			continue
		}
		r.maybeRestart(c, labels, int(st.ExitStatus))
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
