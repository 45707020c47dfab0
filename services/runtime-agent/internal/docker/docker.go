// Package docker is the runtime for hosts with a Docker engine, through the
// Engine API on its unix socket.
//
// Client: github.com/moby/moby/client (v0.6.2), the maintained successor of
// github.com/docker/docker/client. Its minimum API version is 1.40 and it
// negotiates down on the first request, so it drives the Docker 20.10
// engine (API 1.41) of the project's machines; the docker/docker v28
// fallback was not needed.
//
// Workloads are containers labelled with the owner labels; every operation
// first inspects the container and treats one without this node's labels as
// not found. Containers log through the json-file driver whatever the
// daemon's default, so Logs always works; restart policy, memory limit,
// OOM, health checks and events are Docker's own. Events subscribe with
// "since" set to the call time, so the engine replays anything that
// happened between the call and the stream opening. Host network is the
// default; bridge (with published ports) and none are accepted.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// DefaultHost is the engine's usual socket.
const DefaultHost = "unix:///var/run/docker.sock"

// Options configures a Runtime.
type Options struct {
	// Node is the agent's node id; it goes into the owner labels.
	Node string
	// Host is the engine address; DefaultHost when empty.
	Host   string
	Logger *slog.Logger
}

// Runtime drives the Docker engine. It is safe for concurrent use.
type Runtime struct {
	node string
	cli  *client.Client
	log  *slog.Logger
}

var caps = runtime.Capabilities{
	User:           true,
	ReadOnlyRootfs: true,
	Images:         true,
	MemoryLimit:    true,
	OOMEvents:      true,
	Mounts:         true,
	Health:         true,
	NetworkModes:   []runtime.NetworkMode{runtime.NetworkHost, runtime.NetworkBridge, runtime.NetworkNone},
}

var _ runtime.Runtime = (*Runtime)(nil)

// New connects to the engine and checks that it answers; an unreachable
// engine is errs.Unavailable.
func New(ctx context.Context, opts Options) (*Runtime, error) {
	if err := runtime.ValidNode(opts.Node); err != nil {
		return nil, err
	}
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cli, err := client.New(client.WithHost(opts.Host))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "configuring docker client for %s", opts.Host)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, errs.Wrap(errs.Unavailable, err, "reaching docker engine at %s", opts.Host)
	}
	return &Runtime{node: opts.Node, cli: cli, log: opts.Logger.With(logkey.Runtime, string(runtime.KindDocker))}, nil
}

// Client exposes the engine client, for tests that must act behind the
// runtime's back.
func (r *Runtime) Client() *client.Client { return r.cli }

// classify gives an engine error its errs class, keeping it as the cause.
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
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		c = errs.Conflict
	case client.IsErrConnectionFailed(err), cerrdefs.IsUnavailable(err):
		c = errs.Unavailable
	}
	return errs.Wrap(c, err, format, args...)
}

// Kind implements runtime.Runtime.
func (r *Runtime) Kind() runtime.Kind { return runtime.KindDocker }

// Version reports the engine version and the negotiated API version.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.cli.ServerVersion(ctx, client.ServerVersionOptions{})
	if err != nil {
		return "", classify(err, "reading docker version")
	}
	return fmt.Sprintf("docker %s (api %s, client api %s)", v.Version, v.APIVersion, r.cli.ClientVersion()), nil
}

// Capabilities implements runtime.Runtime.
func (r *Runtime) Capabilities() runtime.Capabilities { return caps }

// EnsureImage pulls ref unless the engine has it.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, progress func(runtime.Progress)) error {
	if ref == "" {
		return errs.Field("image", "required")
	}
	if _, err := r.cli.ImageInspect(ctx, ref); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return classify(err, "inspecting image %s", ref)
	}
	resp, err := r.cli.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		return classify(err, "pulling image %s", ref)
	}
	defer resp.Close()
	for m, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return classify(err, "pulling image %s", ref)
		}
		if m.Error != nil {
			return pullError(ref, m.Error.Message)
		}
		if progress != nil {
			p := runtime.Progress{Layer: m.ID, Status: m.Status}
			if m.Progress != nil {
				p.Current, p.Total = m.Progress.Current, m.Progress.Total
			}
			progress(p)
		}
	}
	return nil
}

// pullError classifies a registry error reported inside a pull stream,
// where only the message is left.
func pullError(ref, msg string) error {
	lower := strings.ToLower(msg)
	c := errs.Internal
	switch {
	case strings.Contains(lower, "not found"), strings.Contains(lower, "manifest unknown"),
		strings.Contains(lower, "does not exist"):
		c = errs.NotFound
	case strings.Contains(lower, "no such host"), strings.Contains(lower, "connection refused"),
		strings.Contains(lower, "timeout"), strings.Contains(lower, "network is unreachable"):
		c = errs.Unavailable
	case strings.Contains(lower, "unauthorized"), strings.Contains(lower, "denied"):
		c = errs.Forbidden
	}
	return errs.New(c, "pulling image %s: %s", ref, msg)
}

// ImportImage loads a docker-archive (or, on engines that read it, OCI)
// tarball and returns the tags it carried.
func (r *Runtime) ImportImage(ctx context.Context, rd io.Reader) ([]string, error) {
	resp, err := r.cli.ImageLoad(ctx, rd, client.ImageLoadWithQuiet(true))
	if err != nil {
		return nil, classify(err, "loading image tarball")
	}
	defer resp.Close()
	var refs []string
	dec := json.NewDecoder(resp)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("reading image load output: %w", err)
		}
		if m.Error != nil {
			return nil, errs.New(errs.Invalid, "loading image tarball: %s", m.Error.Message)
		}
		for _, line := range strings.Split(m.Stream, "\n") {
			if ref, ok := strings.CutPrefix(line, "Loaded image: "); ok {
				refs = append(refs, strings.TrimSpace(ref))
			}
		}
	}
	if len(refs) == 0 {
		return nil, errs.New(errs.Invalid, "loading image tarball: it named no image")
	}
	return refs, nil
}

// Create creates the container; the engine makes it atomically, so a
// failure leaves nothing behind.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (string, error) {
	if err := spec.Validate(caps); err != nil {
		return "", err
	}
	mode := spec.NetworkModeOr(runtime.NetworkHost)
	cfg := &container.Config{
		Image:  spec.Image,
		Cmd:    spec.Command,
		Labels: runtime.OwnerLabels(r.node, spec.Labels),
		User:   spec.User,
	}
	for _, k := range sortedKeys(spec.Env) {
		cfg.Env = append(cfg.Env, k+"="+spec.Env[k])
	}
	if h := spec.Health; h != nil {
		cfg.Healthcheck = &container.HealthConfig{
			Test:     append([]string{"CMD"}, h.Command...),
			Interval: h.Interval, Timeout: h.Timeout, Retries: h.Retries,
		}
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(mode),
		CapAdd:         spec.Capabilities,
		ReadonlyRootfs: spec.ReadOnlyRootfs,
		RestartPolicy: container.RestartPolicy{
			Name:              container.RestartPolicyMode(spec.Restart.Name),
			MaximumRetryCount: spec.Restart.MaxRetries,
		},
		LogConfig: container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
	if spec.DropCapabilities {
		host.CapDrop = []string{"ALL"}
	}
	if spec.NoNewPrivileges {
		host.SecurityOpt = append(host.SecurityOpt, "no-new-privileges")
	}
	if host.RestartPolicy.Name == "" {
		host.RestartPolicy.Name = container.RestartPolicyDisabled
	}
	if spec.MemoryBytes > 0 {
		host.Memory, host.MemorySwap = spec.MemoryBytes, spec.MemoryBytes
	}
	for _, m := range spec.Mounts {
		host.Mounts = append(host.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	if len(spec.Ports) > 0 {
		cfg.ExposedPorts = network.PortSet{}
		host.PortBindings = network.PortMap{}
		for i, p := range spec.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			port, err := network.ParsePort(fmt.Sprintf("%d/%s", p.ContainerPort, proto))
			if err != nil {
				return "", errs.Field(fmt.Sprintf("ports[%d]", i), err.Error())
			}
			b := network.PortBinding{HostPort: strconv.Itoa(int(p.HostPort))}
			if p.HostIP != "" {
				ip, err := netip.ParseAddr(p.HostIP)
				if err != nil {
					return "", errs.Field(fmt.Sprintf("ports[%d].host_ip", i), "not an IP address")
				}
				b.HostIP = ip
			}
			cfg.ExposedPorts[port] = struct{}{}
			host.PortBindings[port] = append(host.PortBindings[port], b)
		}
	}
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: spec.Name, Config: cfg, HostConfig: host})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", errs.Wrap(errs.NotFound, err, "creating container %s: image %s not found", spec.Name, spec.Image)
		}
		return "", classify(err, "creating container %s", spec.Name)
	}
	for _, w := range res.Warnings {
		r.log.Warn("docker warned on create", logkey.Workload, spec.Name, logkey.Warning, w)
	}
	return res.ID, nil
}

// owned inspects id and fails with NotFound unless this node owns it.
func (r *Runtime) owned(ctx context.Context, id string) (container.InspectResponse, error) {
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) || err == nil && (res.Container.Config == nil || !runtime.Owned(res.Container.Config.Labels, r.node)) {
		return container.InspectResponse{}, errs.New(errs.NotFound, "workload %q is not one of node %s's containers", id, r.node)
	}
	if err != nil {
		return container.InspectResponse{}, classify(err, "inspecting container %s", id)
	}
	return res.Container, nil
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, id string) error {
	c, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	if _, err := r.cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
		return classify(err, "starting container %s", id)
	}
	return nil
}

func seconds(d time.Duration) *int {
	s := int((d + time.Second - 1) / time.Second)
	return &s
}

// Stop implements runtime.Runtime.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	c, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	if _, err := r.cli.ContainerStop(ctx, c.ID, client.ContainerStopOptions{Timeout: seconds(timeout)}); err != nil {
		return classify(err, "stopping container %s", id)
	}
	return nil
}

// Restart implements runtime.Runtime.
func (r *Runtime) Restart(ctx context.Context, id string, timeout time.Duration) error {
	c, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	if _, err := r.cli.ContainerRestart(ctx, c.ID, client.ContainerRestartOptions{Timeout: seconds(timeout)}); err != nil {
		return classify(err, "restarting container %s", id)
	}
	return nil
}

// Remove force-removes the container and its anonymous volumes.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	c, err := r.owned(ctx, id)
	if err != nil {
		return err
	}
	if _, err := r.cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		return classify(err, "removing container %s", id)
	}
	return nil
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(ctx context.Context, id string) (runtime.Workload, error) {
	c, err := r.owned(ctx, id)
	if err != nil {
		return runtime.Workload{}, err
	}
	return describe(c), nil
}

func describe(c container.InspectResponse) runtime.Workload {
	w := runtime.Workload{
		ID:           c.ID,
		Name:         strings.TrimPrefix(c.Name, "/"),
		RestartCount: c.RestartCount,
		CreatedAt:    parseTime(c.Created),
		State:        runtime.StateUnknown,
	}
	if c.Config != nil {
		w.Image, w.Labels = c.Config.Image, c.Config.Labels
	}
	if s := c.State; s != nil {
		switch s.Status {
		case "created":
			w.State = runtime.StateCreated
		case "running", "paused":
			w.State = runtime.StateRunning
		case "restarting":
			w.State = runtime.StateRestarting
		case "exited", "dead", "removing":
			w.State = runtime.StateExited
		}
		w.PID, w.ExitCode, w.OOMKilled = s.Pid, s.ExitCode, s.OOMKilled
		w.StartedAt, w.FinishedAt = parseTime(s.StartedAt), parseTime(s.FinishedAt)
	}
	return w
}

// parseTime reads the engine's RFC 3339 times; its zero ("0001-...") and
// garbage give the zero time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

func (r *Runtime) ownerFilter() client.Filters {
	return client.Filters{}.Add("label", runtime.LabelManaged+"=true", runtime.LabelNode+"="+r.node)
}

// List implements runtime.Runtime. The engine filters by the owner labels;
// each container is then inspected for its exit code and pid.
func (r *Runtime) List(ctx context.Context) ([]runtime.Workload, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: r.ownerFilter()})
	if err != nil {
		return nil, classify(err, "listing containers")
	}
	out := make([]runtime.Workload, 0, len(res.Items))
	for _, s := range res.Items {
		c, err := r.owned(ctx, s.ID)
		if errors.Is(err, errs.NotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, describe(c))
	}
	return out, nil
}

// Events subscribes to the engine's container events of owned workloads.
func (r *Runtime) Events(ctx context.Context) (*runtime.Stream[runtime.Event], error) {
	now := time.Now()
	f := r.ownerFilter().Add("type", "container").
		Add("event", "start", "die", "oom", "restart", "health_status")
	res := r.cli.Events(ctx, client.EventsListOptions{
		Since:   fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()),
		Filters: f,
	})
	return runtime.Produce(ctx, 16, func(ctx context.Context, send func(runtime.Event) bool) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-res.Err:
				return classify(err, "reading docker events")
			case m := <-res.Messages:
				ev, ok := toEvent(m)
				if ok && !send(ev) {
					return nil
				}
			}
		}
	}), nil
}

func toEvent(m events.Message) (runtime.Event, bool) {
	ev := runtime.Event{
		ID:   m.Actor.ID,
		Name: m.Actor.Attributes["name"],
		Time: time.Unix(0, m.TimeNano),
	}
	action := string(m.Action)
	switch {
	case action == "start":
		ev.Kind = runtime.EventStart
	case action == "die":
		ev.Kind = runtime.EventDie
		ev.ExitCode, _ = strconv.Atoi(m.Actor.Attributes["exitCode"])
	case action == "oom":
		ev.Kind = runtime.EventOOM
	case action == "restart":
		ev.Kind = runtime.EventRestart
	case strings.HasPrefix(action, "health_status"):
		ev.Kind = runtime.EventHealthStatus
		ev.Health = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(action, "health_status"), ":"))
	default:
		return ev, false
	}
	return ev, true
}

// Close implements runtime.Runtime.
func (r *Runtime) Close() error { return r.cli.Close() }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
