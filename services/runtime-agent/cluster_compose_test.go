package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
)

// clusterMarker precedes the README block whose commands bring
// deploy/cluster up, check it and take it down; TestClusterUpAndCheck runs
// them as written.
const clusterMarker = "<!-- cluster-up: TestClusterUpAndCheck runs these commands as written -->"

// TestClusterUpAndCheck runs the README's "Cluster" commands as written:
// make cluster-up (vpn-cluster init, the five images, three NATS servers,
// users/gateway/health x2, both agents joined through the gateway), make
// cluster-check (a user created through the gateway, traffic with curl
// through both agents' Xray, one NATS container killed, a second user's
// traffic through both agents, the container started again: it exits
// non-zero on any failure) and make cluster-down. The variables the README
// names point it at a directory, free loopback ports, a project and image
// tags of this run; the project and the images are removed at the end.
// It took 144 s here with the binaries built (up 68 s, check 43 s, down
// 25 s) and 246 s when they and the images were rebuilt (up 3m17s).
func TestClusterUpAndCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five images and runs 11 containers; -short skips it")
	}
	dockerOrSkip(t)
	compose := composeCommand(t)
	root := repoRoot(t)
	run := "vpnfleet-cluster-" + randomSuffix(t)
	images := map[string]string{}
	for _, name := range []string{"NATS_IMAGE", "USERS_IMAGE", "GATEWAY_IMAGE", "HEALTH_IMAGE", "AGENT_IMAGE"} {
		images[name] = "vpnfleet/" + strings.ToLower(strings.TrimSuffix(name, "_IMAGE")) + ":" + run
	}
	env := append(cleanEnv(),
		"COMPOSE="+strings.Join(compose, " "),
		"COMPOSE_PROJECT_NAME="+run,
		"CLUSTER_DIR="+t.TempDir(),
		fmt.Sprintf("CLUSTER_HTTP_PORT=%d", xraytest.FreePort(t)),
		fmt.Sprintf("CLUSTER_HTTP_PORT_2=%d", xraytest.FreePort(t)),
		fmt.Sprintf("AGENT_A_PORT=%d", xraytest.FreePort(t)),
		fmt.Sprintf("AGENT_B_PORT=%d", xraytest.FreePort(t)),
	)
	for k, v := range images {
		env = append(env, k+"="+v)
	}
	downArgs := append(append([]string{}, compose...), "-f", "deploy/cluster/docker-compose.yml")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := command(ctx, root, env, append(downArgs, "logs", "--no-color", "--tail", "40")...)
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := command(ctx, root, env, append(downArgs, "down", "-v", "--remove-orphans")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		for _, img := range images {
			if out, err := command(ctx, root, env, "docker", "image", "rm", img); err != nil && !strings.Contains(string(out), "No such image") {
				t.Errorf("removing %s: %v\n%s", img, err, out)
			}
		}
	})

	var checked bool
	for _, line := range readmeCommands(t, root+"/README.md", clusterMarker) {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		out, err := command(ctx, root, env, "sh", "-c", line)
		cancel()
		if err != nil {
			t.Fatalf("README: %s: %v\n%s", line, err, out)
		}
		t.Logf("README: %s: %s", line, time.Since(start).Round(time.Second))
		if strings.HasPrefix(line, "make cluster-check") {
			t.Logf("%s", out)
			if !strings.Contains(string(out), "all checks passed") {
				t.Fatalf("cluster-check did not report its checks passed:\n%s", out)
			}
			checked = true
		}
	}
	if !checked {
		t.Fatal("the README's Cluster block runs no make cluster-check")
	}
}
