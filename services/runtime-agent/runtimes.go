package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/containerd"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/docker"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/process"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// DefaultContainerdAddr is containerd's usual socket.
const DefaultContainerdAddr = containerd.DefaultAddress

// dockerBundledContainerd is where Docker's own containerd listens when
// Docker manages it; auto mode tries it after the usual socket.
const dockerBundledContainerd = "/var/run/docker/containerd/containerd.sock"

// OpenRuntime opens the runtime cfg.Runtime names for node. "auto" picks
// the first one reachable: the Docker engine, then containerd, then the
// process supervisor. It is OpenRuntimes' default alone, for tools that
// need one runtime (a test cleaning up).
func OpenRuntime(ctx context.Context, cfg Config, node, dataDir string, log *slog.Logger) (runtime.Runtime, error) {
	set, err := OpenRuntimes(ctx, cfg, node, dataDir, log)
	if err != nil {
		return nil, err
	}
	for _, rt := range set.All()[1:] {
		rt.Close()
	}
	return set.Default(), nil
}

// OpenRuntimes opens every runtime the host offers for node: the Docker
// engine when its socket answers, containerd when its socket (or Docker's
// bundled one) answers, and the process supervisor, which always works.
// cfg.Runtime names the default; "auto" takes the first of Docker,
// containerd, process, and the set says why (Set.Chosen). A runtime whose
// socket answers but which cannot be opened is an error, whatever the
// default: its workloads could be neither adopted nor cleaned up, and a
// server falling back elsewhere would collide with them on their ports.
func OpenRuntimes(ctx context.Context, cfg Config, node, dataDir string, log *slog.Logger) (*Runtimes, error) {
	var (
		rts    []runtime.Runtime
		infos  = map[runtime.Kind]string{} // kind → address
		broken []error
	)
	fail := func(err error) (*Runtimes, error) {
		for _, rt := range rts {
			rt.Close()
		}
		return nil, err
	}
	dockerAddr := dockerSocket(cfg.DockerHost)
	switch {
	case socketAnswers(dockerAddr) || cfg.Runtime == "docker":
		rt, err := docker.New(ctx, docker.Options{Node: node, Host: cfg.DockerHost, Logger: log})
		if err != nil {
			broken = append(broken, fmt.Errorf("docker at %s answers but cannot be used: %w", dockerAddr, err))
			break
		}
		rts, infos[runtime.KindDocker] = append(rts, rt), dockerAddr
	}
	var ctrdAddr string
	for _, addr := range []string{cfg.ContainerdAddr, dockerBundledContainerd} {
		if socketAnswers(addr) {
			ctrdAddr = addr
			break
		}
	}
	if ctrdAddr == "" && cfg.Runtime == "containerd" {
		ctrdAddr = cfg.ContainerdAddr // opening it says why it fails
	}
	if ctrdAddr != "" {
		rt, err := containerd.New(ctx, containerd.Options{Node: node, Address: ctrdAddr, DataDir: dataDir + "/containerd", Logger: log})
		if err != nil {
			broken = append(broken, fmt.Errorf("containerd at %s answers but cannot be used: %w", ctrdAddr, err))
		} else {
			rts, infos[runtime.KindContainerd] = append(rts, rt), ctrdAddr
		}
	}
	prt, err := process.New(process.Options{Node: node, DataDir: dataDir + "/process", Logger: log})
	if err != nil {
		broken = append(broken, fmt.Errorf("process runtime: %w", err))
	} else {
		rts = append(rts, prt)
	}
	if len(broken) > 0 {
		return fail(errs.Wrap(errs.Unavailable, errors.Join(broken...), "opening the runtimes of this host"))
	}
	var def runtime.Kind
	var why string
	switch cfg.Runtime {
	case "auto":
		for _, k := range runtime.Kinds {
			if slices.ContainsFunc(rts, func(rt runtime.Runtime) bool { return rt.Kind() == k }) {
				def = k
				break
			}
		}
		why = autoReason(def, infos)
	case "docker", "containerd", "process":
		def, why = runtime.Kind(cfg.Runtime), "configured (--runtime "+cfg.Runtime+")"
	default:
		return fail(errs.Field("runtime", "must be docker, containerd, process or auto"))
	}
	set, err := runtime.NewSet(def, rts...)
	if err != nil {
		return fail(err)
	}
	return &Runtimes{Set: set, Chosen: why, Addresses: infos}, nil
}

// Runtimes is every runtime of the host, with why the default is the
// default and where each engine was reached.
type Runtimes struct {
	*runtime.Set
	Chosen    string
	Addresses map[runtime.Kind]string
}

// autoReason says why auto chose def.
func autoReason(def runtime.Kind, addrs map[runtime.Kind]string) string {
	switch def {
	case runtime.KindDocker:
		return "auto: the docker engine answers at " + addrs[def]
	case runtime.KindContainerd:
		return "auto: no docker engine; containerd answers at " + addrs[def]
	}
	return "auto: neither a docker engine nor containerd answers on this host"
}

func dockerSocket(host string) string {
	if host == "" {
		host = docker.DefaultHost
	}
	return strings.TrimPrefix(host, "unix://")
}

// socketAnswers reports whether a unix socket accepts a connection.
func socketAnswers(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
