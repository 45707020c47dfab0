// Package process is the runtime for hosts without a container engine and
// for the one-machine default: it runs each workload as a supervised child
// process of the agent.
//
// A workload's "image" is the absolute path of an executable; Command holds
// its arguments. The child gets its own process group, Spec.Env as its whole
// environment (plus a default PATH), "/" as working directory, and its
// stdout and stderr written straight into <data dir>/logs/<node>/<name>.log,
// so it keeps running and logging while the agent restarts. What runs is
// kept in <data dir>/process-<node>.json; a new Runtime over the same data
// dir adopts the processes still alive (matched by pid and start time) and
// restarts, per policy, those that died meanwhile, so List never lies.
//
// Privileges: Spec.User switches the child to uid:gid with no
// supplementary groups, offered (Capabilities.User) only when the agent
// holds CAP_SETUID and CAP_SETGID; an agent that cannot switch users runs
// its workloads as its own user. With Spec.DropCapabilities the child keeps
// only Spec.Capabilities: a non-root child as ambient capabilities (so they
// are effective after exec), and only those the agent holds itself, since
// a capability cannot be handed on that the agent lacks (errs.Invalid
// "capabilities"), one the agent already holds as ambient (systemd's
// AmbientCapabilities) simply inherited, since the shipped units' system-
// call filter denies capset; the bounding set is narrowed to them when the
// agent holds CAP_SETPCAP. Spec.NoNewPrivileges sets no_new_privs. A read-only
// root filesystem is not offered. Without DropCapabilities a child has the
// agent's capabilities.
//
// Limits, reported through Capabilities and rejected as errs.Invalid when a
// spec asks for them: no memory limit (so no OOM events), no mounts, no
// health checks, host network only. Stats come from /proc/<pid> of the main process
// only (children it forks are not counted); network counters are zero since
// the process shares the host's network namespace, and block I/O is zero
// for a process of another user unless the agent holds CAP_SYS_PTRACE
// (vpn-agent keeps none). Log lines carry no
// timestamps, stdout and stderr are merged, and the exit code of a process
// adopted from a previous agent is unknown (-1) since only its parent can
// read it.
//
// Exits are observed through pidfds (Linux 5.3+), so a die event follows an
// exit immediately, with no polling.
package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/logfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Options configures a Runtime.
type Options struct {
	// Node is the agent's node id; it goes into the owner labels.
	Node string
	// DataDir holds the state file and the logs.
	DataDir string
	Logger  *slog.Logger
	// Backoff is the first delay before a policy restart, doubled after
	// each quick failure up to MaxBackoff. Defaults 100ms and 10s.
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// Runtime supervises child processes. It is safe for concurrent use.
type Runtime struct {
	node, dir string
	log       *slog.Logger
	hub       *runtime.Hub
	backoff   time.Duration
	maxBack   time.Duration

	// Closing cancelW wakes every supervisor blocked on a pidfd, so Close
	// can end them without touching the processes.
	cancelR, cancelW *os.File
	closed           chan struct{}
	closeOnce        sync.Once
	wg               sync.WaitGroup

	agent agentCaps

	mu  sync.Mutex
	ws  map[string]*workload
	cpu map[string]cpuSample
}

// workload is one supervised process; rec is guarded by Runtime.mu.
type workload struct {
	rec record
	// stop is closed by Stop so a pending policy restart is dropped; a new
	// one is made by Start.
	stop chan struct{}
	// exited is closed when the supervisor of the current run returns.
	exited chan struct{}
}

// record is what the state file keeps per workload.
type record struct {
	Name    string            `json:"name"`
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Labels  map[string]string `json:"labels"`
	// The privileges the process runs with (runtime.Spec's fields).
	User             string   `json:"user,omitempty"`
	Capabilities     []string `json:"capabilities,omitempty"`
	DropCapabilities bool     `json:"drop_capabilities,omitempty"`
	NoNewPrivileges  bool     `json:"no_new_privileges,omitempty"`
	Restart          runtime.RestartPolicy
	State            runtime.State `json:"state"`
	PID              int           `json:"pid,omitempty"`
	PIDStart         uint64        `json:"pid_start,omitempty"`
	ExitCode         int           `json:"exit_code"`
	RestartCount     int           `json:"restart_count"`
	// Stopped is set by Stop: the policy must not bring it back.
	Stopped    bool      `json:"stopped"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// capsFor says what the runtime can do for an agent holding a: switch
// users only with CAP_SETUID and CAP_SETGID.
func capsFor(a agentCaps) runtime.Capabilities {
	return runtime.Capabilities{
		NetworkModes:        []runtime.NetworkMode{runtime.NetworkHost},
		User:                a.canSwitchUser(),
		AmbientCapabilities: true,
	}
}

var _ runtime.Runtime = (*Runtime)(nil)

// New opens (or starts) the state in opts.DataDir and adopts the processes
// a previous agent left running.
func New(opts Options) (*Runtime, error) {
	if err := runtime.ValidNode(opts.Node); err != nil {
		return nil, err
	}
	if opts.DataDir == "" {
		return nil, errs.Field("data_dir", "required")
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
	if err := os.MkdirAll(filepath.Join(opts.DataDir, "logs", opts.Node), 0o750); err != nil {
		return nil, fmt.Errorf("making data dir: %w", err)
	}
	agent, err := readAgentCaps()
	if err != nil {
		return nil, err
	}
	cr, cw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("making cancel pipe: %w", err)
	}
	r := &Runtime{
		agent: agent,
		node:  opts.Node, dir: opts.DataDir,
		log:     opts.Logger.With(logkey.Runtime, string(runtime.KindProcess)),
		hub:     runtime.NewHub(opts.Logger),
		backoff: opts.Backoff, maxBack: opts.MaxBackoff,
		cancelR: cr, cancelW: cw,
		closed: make(chan struct{}),
		ws:     map[string]*workload{},
		cpu:    map[string]cpuSample{},
	}
	if err := r.load(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Runtime) statePath() string { return filepath.Join(r.dir, "process-"+r.node+".json") }

func (r *Runtime) logPath(name string) string {
	return filepath.Join(r.dir, "logs", r.node, name+".log")
}

// load reads the state file and adopts or restarts what should run.
func (r *Runtime) load() error {
	data, err := os.ReadFile(r.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading process state: %w", err)
	}
	var recs []record
	if err := json.Unmarshal(data, &recs); err != nil {
		return fmt.Errorf("decoding process state %s: %w", r.statePath(), err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		w := &workload{rec: rec, stop: make(chan struct{}), exited: make(chan struct{})}
		close(w.exited)
		r.ws[rec.Name] = w
		if rec.State != runtime.StateRunning && rec.State != runtime.StateRestarting {
			continue
		}
		if rec.PID > 0 && procStart(rec.PID) == rec.PIDStart {
			r.log.Info("adopting process", logkey.Workload, rec.Name, logkey.PID, rec.PID)
			w.exited = make(chan struct{})
			r.wg.Add(1)
			go r.supervise(w, w.rec.PID, false)
			continue
		}
		w.rec.State, w.rec.PID, w.rec.ExitCode = runtime.StateExited, 0, -1
		w.rec.FinishedAt = time.Now()
		if !rec.Stopped && (rec.Restart.Name == runtime.RestartAlways || rec.Restart.Name == runtime.RestartOnFailure) {
			r.log.Info("restarting process that died while the agent was away", logkey.Workload, rec.Name)
			w.rec.RestartCount++
			if err := r.startLocked(w); err != nil {
				r.log.Error("restarting process", logkey.Workload, rec.Name, logkey.Err, err)
			}
		}
	}
	return r.saveLocked()
}

// saveLocked writes the state file atomically. Callers hold r.mu.
func (r *Runtime) saveLocked() error {
	recs := make([]record, 0, len(r.ws))
	for _, w := range r.ws {
		recs = append(recs, w.rec)
	}
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding process state: %w", err)
	}
	return atomicfile.Write(r.statePath(), data, 0o640, false)
}

// Kind implements runtime.Runtime.
func (r *Runtime) Kind() runtime.Kind { return runtime.KindProcess }

// Version reports the kernel release, the only "engine" under processes.
func (r *Runtime) Version(context.Context) (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("reading kernel version: %w", err)
	}
	return "linux " + unix.ByteSliceToString(u.Release[:]), nil
}

// Capabilities implements runtime.Runtime.
func (r *Runtime) Capabilities() runtime.Capabilities { return capsFor(r.held()) }

// EnsureImage checks that ref is an executable file; processes cannot be
// pulled.
func (r *Runtime) EnsureImage(_ context.Context, ref string, progress func(runtime.Progress)) error {
	if !filepath.IsAbs(ref) {
		return errs.Field("image", "must be an absolute executable path for the process runtime")
	}
	st, err := os.Stat(ref)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return errs.New(errs.NotFound, "executable %s not found", ref)
	case err != nil:
		return fmt.Errorf("checking executable %s: %w", ref, err)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return errs.New(errs.Invalid, "%s is not an executable file", ref)
	}
	if progress != nil {
		progress(runtime.Progress{Status: "present", Current: st.Size(), Total: st.Size()})
	}
	return nil
}

// ImportImage is not supported: processes run host executables.
func (r *Runtime) ImportImage(context.Context, io.Reader) ([]string, error) {
	return nil, errs.New(errs.Invalid, "the process runtime runs host executables and cannot import images")
}

// Create records a workload; nothing runs until Start.
func (r *Runtime) Create(ctx context.Context, spec runtime.Spec) (string, error) {
	if err := spec.Validate(r.Capabilities()); err != nil {
		return "", err
	}
	priv := record{User: spec.User, Capabilities: spec.Capabilities, DropCapabilities: spec.DropCapabilities, NoNewPrivileges: spec.NoNewPrivileges}
	if _, err := r.privilegesFor(priv); err != nil {
		return "", err
	}
	if err := r.EnsureImage(ctx, spec.Image, nil); err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ws[spec.Name]; ok {
		return "", errs.New(errs.Conflict, "workload %s already exists", spec.Name)
	}
	policy := spec.Restart
	if policy.Name == "" {
		policy.Name = runtime.RestartNo
	}
	w := &workload{
		rec: record{
			Name: spec.Name, Image: spec.Image, Command: spec.Command, Env: spec.Env,
			Labels: runtime.OwnerLabels(r.node, spec.Labels),
			User:   spec.User, Capabilities: spec.Capabilities,
			DropCapabilities: spec.DropCapabilities, NoNewPrivileges: spec.NoNewPrivileges,
			Restart: policy, State: runtime.StateCreated, CreatedAt: time.Now(),
		},
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	close(w.exited)
	r.ws[spec.Name] = w
	if err := r.saveLocked(); err != nil {
		delete(r.ws, spec.Name)
		return "", fmt.Errorf("creating workload %s: %w", spec.Name, err)
	}
	return spec.Name, nil
}

// get returns the owned workload id; callers hold r.mu.
func (r *Runtime) getLocked(id string) (*workload, error) {
	w, ok := r.ws[id]
	if !ok {
		return nil, errs.New(errs.NotFound, "workload %q is not one of node %s's processes", id, r.node)
	}
	return w, nil
}

// Start starts the process; starting a running workload does nothing.
func (r *Runtime) Start(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, err := r.getLocked(id)
	if err != nil {
		return err
	}
	if w.rec.State == runtime.StateRunning || w.rec.State == runtime.StateRestarting {
		return nil
	}
	select {
	case <-r.closed:
		return errs.New(errs.Unavailable, "process runtime closed")
	default:
	}
	w.rec.Stopped = false
	w.stop = make(chan struct{})
	if err := r.startLocked(w); err != nil {
		return fmt.Errorf("starting workload %s: %w", id, err)
	}
	return r.saveLocked()
}

// startLocked spawns the process and its supervisor. Callers hold r.mu.
func (r *Runtime) startLocked(w *workload) error {
	pid, err := r.spawn(w.rec)
	if err != nil {
		return err
	}
	w.rec.State, w.rec.PID, w.rec.PIDStart = runtime.StateRunning, pid, procStart(pid)
	w.rec.StartedAt = time.Now()
	w.exited = make(chan struct{})
	delete(r.cpu, w.rec.Name)
	r.hub.Publish(runtime.Event{Kind: runtime.EventStart, ID: w.rec.Name, Name: w.rec.Name, Time: w.rec.StartedAt})
	r.wg.Add(1)
	go r.supervise(w, pid, true)
	return nil
}

func (r *Runtime) spawn(rec record) (int, error) {
	logf, err := logfile.Open(r.logPath(rec.Name))
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	env := make([]string, 0, len(rec.Env)+1)
	hasPath := false
	for k, v := range rec.Env {
		env = append(env, k+"="+v)
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	priv, err := r.privilegesFor(rec)
	if err != nil {
		return 0, err
	}
	pid, err := r.forkExec(rec.Image, append([]string{rec.Image}, rec.Command...), &syscall.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []uintptr{devnull.Fd(), logf.Fd(), logf.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}, priv)
	if err != nil {
		return 0, fmt.Errorf("executing %s: %w", rec.Image, err)
	}
	return pid, nil
}

// supervise waits for pid to exit, records the exit and applies the
// restart policy. child tells whether this agent is the parent (and so can
// read the exit code). It returns early, leaving the process alone, when
// the runtime closes.
func (r *Runtime) supervise(w *workload, pid int, child bool) {
	defer r.wg.Done()
	for {
		if !r.waitExit(pid) {
			return // runtime closed; the process runs on
		}
		code := -1
		if child {
			code = reap(pid)
		}
		r.mu.Lock()
		w.rec.State, w.rec.PID, w.rec.ExitCode, w.rec.FinishedAt = runtime.StateExited, 0, code, time.Now()
		name, policy, stopped, runFor := w.rec.Name, w.rec.Restart, w.rec.Stopped, time.Since(w.rec.StartedAt)
		again := !stopped && (policy.Name == runtime.RestartAlways ||
			policy.Name == runtime.RestartOnFailure && code != 0 &&
				(policy.MaxRetries == 0 || w.rec.RestartCount < policy.MaxRetries))
		if again {
			w.rec.State = runtime.StateRestarting
		}
		if err := r.saveLocked(); err != nil {
			r.log.Error("saving process state", logkey.Workload, name, logkey.Err, err)
		}
		stop, exited := w.stop, w.exited
		r.hub.Publish(runtime.Event{Kind: runtime.EventDie, ID: name, Name: name, Time: w.rec.FinishedAt, ExitCode: code})
		r.mu.Unlock()
		if !again {
			close(exited)
			return
		}

		delay := r.backoffFor(w, runFor)
		t := time.NewTimer(delay)
		select {
		case <-r.closed:
			t.Stop()
			return
		case <-stop:
			t.Stop()
			r.mu.Lock()
			w.rec.State = runtime.StateExited
			if err := r.saveLocked(); err != nil {
				r.log.Error("saving process state", logkey.Workload, name, logkey.Err, err)
			}
			r.mu.Unlock()
			close(exited)
			return
		case <-t.C:
		}

		r.mu.Lock()
		if w.rec.Stopped || w.exited != exited {
			r.mu.Unlock()
			close(exited)
			return
		}
		var err error
		pid, err = r.spawn(w.rec)
		if err != nil {
			r.log.Error("restarting process", logkey.Workload, name, logkey.Err, err)
			w.rec.State, w.rec.ExitCode = runtime.StateExited, 127
			if err := r.saveLocked(); err != nil {
				r.log.Error("saving process state", logkey.Workload, name, logkey.Err, err)
			}
			r.mu.Unlock()
			close(exited)
			return
		}
		child = true
		w.rec.RestartCount++
		w.rec.State, w.rec.PID, w.rec.PIDStart, w.rec.StartedAt = runtime.StateRunning, pid, procStart(pid), time.Now()
		delete(r.cpu, name)
		if err := r.saveLocked(); err != nil {
			r.log.Error("saving process state", logkey.Workload, name, logkey.Err, err)
		}
		now := w.rec.StartedAt
		r.hub.Publish(runtime.Event{Kind: runtime.EventRestart, ID: name, Name: name, Time: now})
		r.hub.Publish(runtime.Event{Kind: runtime.EventStart, ID: name, Name: name, Time: now})
		r.mu.Unlock()
	}
}

// backoffFor doubles the delay for each quick failure in a row and resets
// after a run that lasted ten times the maximum.
func (r *Runtime) backoffFor(w *workload, runFor time.Duration) time.Duration {
	if runFor > 10*r.maxBack {
		return r.backoff
	}
	d := r.backoff
	for i := 0; i < w.rec.RestartCount && d < r.maxBack; i++ {
		d *= 2
	}
	return min(d, r.maxBack)
}

// waitExit blocks until pid has exited (true) or the runtime closes
// (false).
func (r *Runtime) waitExit(pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // already gone (ESRCH)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{
		{Fd: int32(fd), Events: unix.POLLIN},
		{Fd: int32(r.cancelR.Fd()), Events: unix.POLLIN},
	}
	for {
		_, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			r.log.Error("waiting for process", logkey.PID, pid, logkey.Err, err)
			return false
		}
		if fds[0].Revents != 0 {
			return true
		}
		if fds[1].Revents != 0 {
			return false
		}
	}
}

// reap collects a child's exit status: its code, or 128+signal when killed
// (as shells and Docker report it).
func reap(pid int) int {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return -1
		}
		break
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Stop sends SIGTERM to the process group, SIGKILL after timeout, and
// waits for the exit.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	r.mu.Lock()
	w, err := r.getLocked(id)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	w.rec.Stopped = true
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	pid, exited := w.rec.PID, w.exited
	if err := r.saveLocked(); err != nil {
		r.mu.Unlock()
		return fmt.Errorf("stopping workload %s: %w", id, err)
	}
	r.mu.Unlock()
	if pid > 0 {
		_ = unix.Kill(-pid, unix.SIGTERM)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping workload %s: %w", id, ctx.Err())
	case <-t.C:
	}
	r.mu.Lock()
	pid = w.rec.PID
	r.mu.Unlock()
	if pid > 0 {
		_ = unix.Kill(-pid, unix.SIGKILL)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("killing workload %s: %w", id, ctx.Err())
	}
}

// Restart stops and starts the workload.
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

// Remove kills the workload and deletes its record and log.
func (r *Runtime) Remove(ctx context.Context, id string) error {
	if err := r.Stop(ctx, id, 0); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.getLocked(id); err != nil {
		return err
	}
	delete(r.ws, id)
	delete(r.cpu, id)
	if err := r.saveLocked(); err != nil {
		return fmt.Errorf("removing workload %s: %w", id, err)
	}
	if err := os.Remove(r.logPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing log of %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) describe(w *workload) runtime.Workload {
	rec := w.rec
	labels := make(map[string]string, len(rec.Labels))
	for k, v := range rec.Labels {
		labels[k] = v
	}
	return runtime.Workload{
		ID: rec.Name, Name: rec.Name, Image: rec.Image, Labels: labels,
		State: rec.State, PID: rec.PID, ExitCode: rec.ExitCode, RestartCount: rec.RestartCount,
		CreatedAt: rec.CreatedAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
	}
}

// Inspect implements runtime.Runtime.
func (r *Runtime) Inspect(_ context.Context, id string) (runtime.Workload, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, err := r.getLocked(id)
	if err != nil {
		return runtime.Workload{}, err
	}
	return r.describe(w), nil
}

// List implements runtime.Runtime.
func (r *Runtime) List(context.Context) ([]runtime.Workload, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.Workload, 0, len(r.ws))
	for _, w := range r.ws {
		out = append(out, r.describe(w))
	}
	return out, nil
}

// Logs reads the workload's log file; lines carry no timestamps.
func (r *Runtime) Logs(ctx context.Context, id string, opts runtime.LogOptions) (*runtime.Stream[runtime.LogLine], error) {
	r.mu.Lock()
	w, err := r.getLocked(id)
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	alive := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return w.rec.State == runtime.StateRunning || w.rec.State == runtime.StateRestarting
	}
	return logfile.Stream(ctx, r.logPath(id), opts, alive), nil
}

// Events implements runtime.Runtime.
func (r *Runtime) Events(ctx context.Context) (*runtime.Stream[runtime.Event], error) {
	return r.hub.Subscribe(ctx), nil
}

// Close ends supervision without stopping the processes; a new Runtime
// over the same data dir adopts them.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.cancelW.Close()
		r.wg.Wait()
		r.cancelR.Close()
	})
	return nil
}

// errNotRunning is the cause when a running workload was expected.
var errNotRunning = errors.New("not running")

func (r *Runtime) pidOf(id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, err := r.getLocked(id)
	if err != nil {
		return 0, err
	}
	if w.rec.PID == 0 {
		return 0, errs.Wrap(errs.Conflict, errNotRunning, "workload %s", id)
	}
	return w.rec.PID, nil
}

// procStart returns the start time of pid in clock ticks since boot (field
// 22 of /proc/<pid>/stat), which tells a pid apart from a reused one; 0
// when the process is gone.
func procStart(pid int) uint64 {
	f, err := readStat(pid)
	if err != nil {
		return 0
	}
	return f.start
}

type statFields struct {
	utime, stime, start uint64
	threads             uint64
}

func readStat(pid int) (statFields, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return statFields{}, err
	}
	// The command name (field 2) may hold spaces; fields resume after the
	// last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return statFields{}, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state).
	if len(f) < 20 {
		return statFields{}, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, len(f))
	}
	var out statFields
	fmt.Sscan(f[11], &out.utime)   // field 14
	fmt.Sscan(f[12], &out.stime)   // field 15
	fmt.Sscan(f[17], &out.threads) // field 20
	fmt.Sscan(f[19], &out.start)   // field 22
	return out, nil
}
