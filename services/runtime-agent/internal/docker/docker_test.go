package docker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/docker"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// newRuntime connects to the local engine, skipping the test when there is
// none, unless REQUIRE_DOCKER=1 (CI) makes that a failure.
func newRuntime(tb testing.TB, node string) *docker.Runtime {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rt, err := docker.New(ctx, docker.Options{
		Node:   node,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if errors.Is(err, errs.Unavailable) {
		if os.Getenv("REQUIRE_DOCKER") == "1" {
			tb.Fatalf("REQUIRE_DOCKER=1 but the docker engine is unreachable: %v", err)
		}
		tb.Skipf("skipping: docker engine unreachable (%v); set REQUIRE_DOCKER=1 to fail instead", err)
	}
	if err != nil {
		tb.Fatalf("docker.New: %v", err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt
}

func config(tb testing.TB) runtimetest.Config {
	native := newRuntime(tb, "native").Client()
	return runtimetest.Config{
		New: func(tb testing.TB, node string) runtime.Runtime { return newRuntime(tb, node) },
		Foreign: func(tb testing.TB) (string, func() error) {
			ctx := context.Background()
			name := runtimetest.NewNode("foreign")
			// An image every run has: the workload the suite imported.
			const image = "vpnfleet/runtimetest-workload:contract"
			if _, err := native.ImageInspect(ctx, image); err != nil {
				tb.Fatalf("finding the workload image: %v", err)
			}
			res, err := native.ContainerCreate(ctx, client.ContainerCreateOptions{
				Name:       name,
				Config:     &container.Config{Image: image, Labels: map[string]string{"owner": "someone-else"}},
				HostConfig: &container.HostConfig{NetworkMode: "host"},
			})
			if err != nil {
				tb.Fatalf("creating foreign container: %v", err)
			}
			tb.Cleanup(func() {
				native.ContainerRemove(context.Background(), res.ID, client.ContainerRemoveOptions{Force: true})
			})
			if _, err := native.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
				tb.Fatalf("starting foreign container: %v", err)
			}
			return res.ID, func() error {
				c, err := native.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
				if err != nil {
					return err
				}
				if !c.Container.State.Running {
					return fmt.Errorf("foreign container state %s", c.Container.State.Status)
				}
				return nil
			}
		},
		Leftovers: func(tb testing.TB, name string) []string {
			res, err := native.ContainerList(context.Background(), client.ContainerListOptions{
				All: true, Filters: client.Filters{}.Add("name", "^/"+name+"$"),
			})
			if err != nil {
				tb.Fatalf("listing containers: %v", err)
			}
			var left []string
			for _, c := range res.Items {
				left = append(left, "container "+c.ID[:12])
			}
			return left
		},
	}
}

func TestContract(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	runtimetest.Run(t, config(t))
}

func BenchmarkRuntime(b *testing.B) {
	runtimetest.Bench(b, config(b))
}
