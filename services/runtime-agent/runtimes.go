package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
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
// process supervisor, which always works.
func OpenRuntime(ctx context.Context, cfg Config, node, dataDir string, log *slog.Logger) (runtime.Runtime, error) {
	openDocker := func() (runtime.Runtime, error) {
		return docker.New(ctx, docker.Options{Node: node, Host: cfg.DockerHost, Logger: log})
	}
	openContainerd := func(addr string) (runtime.Runtime, error) {
		return containerd.New(ctx, containerd.Options{Node: node, Address: addr, DataDir: dataDir + "/containerd", Logger: log})
	}
	openProcess := func() (runtime.Runtime, error) {
		return process.New(process.Options{Node: node, DataDir: dataDir + "/process", Logger: log})
	}
	switch cfg.Runtime {
	case "docker":
		return openDocker()
	case "containerd":
		return openContainerd(cfg.ContainerdAddr)
	case "process":
		return openProcess()
	case "auto":
		if socketAnswers(dockerSocket(cfg.DockerHost)) {
			if rt, err := openDocker(); err == nil {
				return rt, nil
			}
		}
		for _, addr := range []string{cfg.ContainerdAddr, dockerBundledContainerd} {
			if socketAnswers(addr) {
				if rt, err := openContainerd(addr); err == nil {
					return rt, nil
				}
			}
		}
		return openProcess()
	}
	return nil, errs.Field("runtime", "must be docker, containerd, process or auto")
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
