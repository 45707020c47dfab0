package containerd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/containerd"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// address finds the socket: CONTAINERD_ADDRESS, the standard one, or the
// one Docker's bundled containerd uses.
func address() string {
	if a := os.Getenv("CONTAINERD_ADDRESS"); a != "" {
		return a
	}
	for _, a := range []string{containerd.DefaultAddress, "/var/run/docker/containerd/containerd.sock"} {
		if _, err := os.Stat(a); err == nil {
			return a
		}
	}
	return containerd.DefaultAddress
}

// testNamespace keeps test containers apart from the agent's real ones.
const testNamespace = "vpn-test"

// newRuntime connects to containerd, skipping the test when there is none,
// unless REQUIRE_DOCKER=1 (CI) makes that a failure.
func newRuntime(tb testing.TB, node, dir, snapshotter string) *containerd.Runtime {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := containerd.New(ctx, containerd.Options{
		Node: node, Address: address(), Namespace: testNamespace, DataDir: dir, Snapshotter: snapshotter,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if errors.Is(err, errs.Unavailable) {
		if os.Getenv("REQUIRE_DOCKER") == "1" {
			tb.Fatalf("REQUIRE_DOCKER=1 but containerd is unreachable: %v", err)
		}
		tb.Skipf("skipping: containerd unreachable (%v); set REQUIRE_DOCKER=1 to fail instead", err)
	}
	if err != nil {
		tb.Fatalf("containerd.New: %v", err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt
}

// config runs against the given snapshotter; empty lets New probe.
func config(tb testing.TB, snapshotter string) runtimetest.Config {
	dir := tb.TempDir()
	native := newRuntime(tb, "native", dir, snapshotter)
	tb.Logf("containerd runtime: snapshotter %s", native.Snapshotter())
	c := native.Client()
	ctx := namespaces.WithNamespace(context.Background(), testNamespace)
	return runtimetest.Config{
		New: func(tb testing.TB, node string) runtime.Runtime { return newRuntime(tb, node, dir, snapshotter) },
		Foreign: func(tb testing.TB) (string, func() error) {
			var img client.Image
			all, err := c.ListImages(ctx)
			if err != nil {
				tb.Fatalf("listing images: %v", err)
			}
			for _, i := range all {
				if strings.Contains(i.Name(), "runtimetest-workload") {
					img = i
				}
			}
			if img == nil {
				tb.Fatal("no workload image in the namespace")
			}
			id := runtimetest.NewNode("foreign")
			ctr, err := c.NewContainer(ctx, id,
				client.WithImage(img),
				client.WithSnapshotter(native.Snapshotter()),
				client.WithNewSnapshot(id+"-rootfs", img),
				client.WithNewSpec(oci.WithImageConfig(img)),
				client.WithContainerLabels(map[string]string{"owner": "someone-else"}),
			)
			if err != nil {
				tb.Fatalf("creating foreign container: %v", err)
			}
			tb.Cleanup(func() {
				if err := ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil {
					tb.Errorf("deleting foreign container: %v", err)
				}
			})
			return id, func() error {
				if _, err := c.LoadContainer(ctx, id); err != nil {
					return fmt.Errorf("foreign container gone: %w", err)
				}
				return nil
			}
		},
		Leftovers: func(tb testing.TB, name string) []string {
			var left []string
			if _, err := c.LoadContainer(ctx, name); err == nil {
				left = append(left, "container "+name)
			} else if !cerrdefs.IsNotFound(err) {
				tb.Fatalf("loading container: %v", err)
			}
			if _, err := c.SnapshotService(native.Snapshotter()).Stat(ctx, name+"-rootfs"); err == nil {
				left = append(left, "snapshot "+name+"-rootfs")
			}
			if _, err := os.Stat(dir + "/logs/" + testNamespace + "/" + name + ".log"); err == nil {
				left = append(left, "log of "+name)
			}
			return left
		},
	}
}

func TestContract(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	tests := []struct{ name, snapshotter string }{
		{"probed snapshotter", ""},
		// The fallback for hosts where overlay cannot be mounted.
		{"native snapshotter", "native"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runtimetest.Run(t, config(t, tt.snapshotter))
		})
	}
}

func BenchmarkRuntime(b *testing.B) {
	runtimetest.Bench(b, config(b, ""))
}
