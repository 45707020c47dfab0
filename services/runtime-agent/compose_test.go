package agent_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// composeMarker precedes the README block whose commands bring the compose
// file up; TestComposeServesUsers runs them as written.
const composeMarker = "<!-- compose-up: TestComposeServesUsers runs these commands as written -->"

// imageUID is the user the images run as (deploy/image/passwd).
const imageUID = "65532"

// TestComposeServesUsers brings docker-compose.yml up exactly as the
// README's compose section says (its commands run as written; the
// variables it documents point the API, ops and NATS listeners at free
// loopback ports, name a project and an image tag of this run), waits for
// the image's HEALTHCHECK to report healthy, reads the admin token the way
// the section does, deploys a VLESS+REALITY server through the HTTP API
// and proves with a real Xray client, from the user's link, that traffic
// passes. vpnd and its Xray run as the image's user with no capabilities,
// and the image carries a CA bundle. The project, its volume and the image
// are removed at the end.
func TestComposeServesUsers(t *testing.T) {
	dockerOrSkip(t)
	compose := composeCommand(t)
	root := repoRoot(t)
	run := "vpnfleet-test-" + randomSuffix(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", xraytest.FreePort(t))
	env := append(cleanEnv(),
		"COMPOSE_PROJECT_NAME="+run,
		"VPND_IMAGE=vpnfleet/vpnd:"+run,
		"VPN_HTTP_ADDR="+httpAddr,
		fmt.Sprintf("VPN_OPS_ADDR=127.0.0.1:%d", xraytest.FreePort(t)),
		fmt.Sprintf("VPN_NATS_LISTEN=127.0.0.1:%d", xraytest.FreePort(t)),
		"VPN_PUBLIC_ADDR=127.0.0.1",
		// The test's REALITY dest and HTTP target are on loopback.
		"VPN_ALLOW_PRIVATE_NETWORKS=true",
	)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := command(ctx, root, env, append(compose, "logs", "--no-color", "--tail", "50")...)
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := command(ctx, root, env, append(compose, "down", "-v", "--remove-orphans")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
		if out, err := command(ctx, root, env, "docker", "image", "rm", "vpnfleet/vpnd:"+run); err != nil {
			t.Errorf("removing the image: %v\n%s", err, out)
		}
	})

	for _, line := range readmeCommands(t, filepath.Join(root, "README.md"), composeMarker) {
		if rest, ok := strings.CutPrefix(line, "docker-compose "); ok {
			line = strings.Join(compose, " ") + " " + rest
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		out, err := command(ctx, root, env, "sh", "-c", line)
		cancel()
		if err != nil {
			t.Fatalf("README: %s: %v\n%s", line, err, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := command(ctx, root, env, append(compose, "ps", "-q", "vpnd")...)
	if err != nil {
		t.Fatalf("compose ps: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	if id == "" {
		t.Fatal("compose ps names no vpnd container")
	}
	waitHealthy(t, ctx, id)

	// vpnd runs as the image's user, without capabilities.
	var pid int
	inspect(t, ctx, id, "{{.State.Pid}}", &pid)
	assertUnprivileged(t, pid, "vpnd")

	// The admin token, as the README reads it: from the data volume.
	token := strings.TrimSpace(string(containerFile(t, ctx, id, "/var/lib/vpnd/admin.token")))
	if token == "" {
		t.Fatal("empty admin token")
	}
	if bundle := containerFile(t, ctx, id, "/etc/ssl/certs/ca-certificates.crt"); !isPEM(bundle) {
		t.Fatalf("the image's CA bundle holds no certificate (%d bytes)", len(bundle))
	}

	api := apiClient{base: "http://" + httpAddr, token: token}
	var nodes struct {
		Nodes []struct {
			ID      string `json:"id"`
			Healthy bool   `json:"healthy"`
		} `json:"nodes"`
	}
	waitUntil(t, time.Minute, func() error {
		if err := api.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &nodes); err != nil {
			return err
		}
		if len(nodes.Nodes) != 1 || !nodes.Nodes[0].Healthy {
			return fmt.Errorf("nodes %+v, want vpnd's own, healthy", nodes.Nodes)
		}
		return nil
	})
	node := nodes.Nodes[0].ID

	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	var srv server.Server
	if err := api.do(ctx, http.MethodPost, "/api/v1/servers", server.CreateRequest{Node: node, Name: "edge", Inbounds: []server.InboundRequest{{
		Tag: "vless", Protocol: user.VLESSReality, Port: xraytest.FreePort(t), Listen: "127.0.0.1", Dest: dest, ServerNames: []string{sni},
	}}}, &srv); err != nil {
		t.Fatalf("deploying a server: %v", err)
	}
	waitUntil(t, 2*time.Minute, func() error {
		var got server.Server
		if err := api.do(ctx, http.MethodGet, "/api/v1/servers/"+srv.ID, nil, &got); err != nil {
			return err
		}
		if got.Status.State != server.StateApplied {
			return fmt.Errorf("server status %+v", got.Status)
		}
		return nil
	})
	// The Xray vpnd started runs as the image's user too.
	assertUnprivileged(t, xrayChild(t, pid), "its xray")

	var u user.User
	if err := api.do(ctx, http.MethodPost, "/api/v1/users", user.CreateRequest{Name: "alice"}, &u); err != nil {
		t.Fatalf("creating a user: %v", err)
	}
	link := api.link(t, u.ID, srv.ID, user.VLESSReality, time.Minute)
	client := xraytest.StartClient(t, xraytest.Binary(t), outbound(t, link))
	connects(t, client, target, "alice over vless-reality through the compose vpnd")
}

// TestImagesRunAsDocumented: the vpnd image started on its own with
// `docker run -p` (on a private network) answers its API through the
// published port, as its Dockerfile says; the agent image carries Xray,
// runs as the image's user and declares a HEALTHCHECK.
func TestImagesRunAsDocumented(t *testing.T) {
	dockerOrSkip(t)
	root := repoRoot(t)
	run := "vpnfleet-test-" + randomSuffix(t)
	vpnd, agentImage := "vpnfleet/vpnd:"+run, "vpnfleet/vpn-agent:"+run
	env := cleanEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, args := range [][]string{
			{"docker", "rm", "-f", "-v", run},
			{"docker", "network", "rm", run},
			{"docker", "image", "rm", vpnd, agentImage},
		} {
			if out, err := command(ctx, root, env, args...); err != nil && !strings.Contains(string(out), "No such") {
				t.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})
	if out, err := command(ctx, root, env, "make", "image", "agent-image", "VPND_IMAGE="+vpnd, "AGENT_IMAGE="+agentImage); err != nil {
		t.Fatalf("make image agent-image: %v\n%s", err, out)
	}

	t.Run("vpnd with docker run -p", func(t *testing.T) {
		if out, err := command(ctx, root, env, "docker", "network", "create", run); err != nil {
			t.Fatalf("creating a network: %v\n%s", err, out)
		}
		if out, err := command(ctx, root, env, "docker", "run", "-d", "--name", run, "--network", run,
			"-p", "127.0.0.1::8080", "--read-only", "--cap-drop", "ALL", vpnd); err != nil {
			t.Fatalf("docker run: %v\n%s", err, out)
		}
		waitHealthy(t, ctx, run)
		out, err := command(ctx, root, env, "docker", "port", run, "8080/tcp")
		if err != nil {
			t.Fatalf("docker port: %v\n%s", err, out)
		}
		published := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
		resp, err := http.Get("http://" + published + "/healthz")
		if err != nil {
			t.Fatalf("the published API: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz through %s: %s", published, resp.Status)
		}
	})

	t.Run("agent", func(t *testing.T) {
		var cfg struct {
			User        string
			Healthcheck *struct{ Test []string }
		}
		inspect(t, ctx, agentImage, "{{json .Config}}", &cfg)
		if cfg.User != imageUID+":"+imageUID {
			t.Errorf("agent image user %q, want %s:%s", cfg.User, imageUID, imageUID)
		}
		if cfg.Healthcheck == nil || !strings.Contains(strings.Join(cfg.Healthcheck.Test, " "), "vpn-agent healthcheck") {
			t.Errorf("agent image healthcheck %+v", cfg.Healthcheck)
		}
		out, err := command(ctx, root, env, "docker", "run", "--rm", "--network", "none", "--entrypoint", "/usr/local/bin/xray", agentImage, "version")
		if err != nil || !strings.Contains(string(out), "Xray") {
			t.Fatalf("xray in the agent image: %v\n%s", err, out)
		}
	})
}

// composeCommand is docker-compose (1.29 is what this machine has) or the
// v2 plugin, `docker compose`.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if os.Getenv("REQUIRE_TOOLS") == "1" || os.Getenv("REQUIRE_DOCKER") == "1" {
		t.Fatal("neither docker-compose nor `docker compose` is installed but REQUIRE_TOOLS or REQUIRE_DOCKER is set: `make tools` installs it")
	}
	t.Skip("skipping: neither docker-compose nor `docker compose` is installed; set REQUIRE_TOOLS=1 to fail instead")
	return nil
}

// cleanEnv is the test's environment without the outer make's variables,
// so a nested make runs as the README's would.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// command runs a program in dir and returns its combined output.
func command(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir, cmd.Env = dir, env
	return cmd.CombinedOutput()
}

// readmeCommands returns the commands of the first sh block after marker
// in the README, without comments and blank lines.
func readmeCommands(t *testing.T, readme, marker string) []string {
	t.Helper()
	data, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(data), marker)
	if !ok {
		t.Fatalf("%s has no %q", readme, marker)
	}
	_, after, ok = strings.Cut(after, "```sh\n")
	if !ok {
		t.Fatalf("%s: no sh block after %q", readme, marker)
	}
	block, _, _ := strings.Cut(after, "```")
	var cmds []string
	for _, line := range strings.Split(block, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line != "" {
			cmds = append(cmds, line)
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("%s: empty block after %q", readme, marker)
	}
	return cmds
}

// waitHealthy waits until the container's HEALTHCHECK reports healthy,
// and fails at once when the container stops.
func waitHealthy(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	waitUntil(t, 3*time.Minute, func() error {
		var st struct {
			Status string
			Health *struct{ Status string }
		}
		inspect(t, ctx, id, "{{json .State}}", &st)
		if st.Status != "running" {
			t.Fatalf("container %s is %s", id, st.Status)
		}
		if st.Health == nil {
			t.Fatalf("container %s has no healthcheck", id)
		}
		if st.Health.Status != "healthy" {
			return fmt.Errorf("container %s: health %s", id, st.Health.Status)
		}
		return nil
	})
}

// waitUntil polls cond every 250 ms (each poll may start a docker
// command) until it returns nil, failing t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	waitfor.CondEvery(t, timeout, 250*time.Millisecond, cond)
}

// inspect decodes docker inspect's format of a container or image into v.
func inspect(t *testing.T, ctx context.Context, id, format string, v any) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "inspect", "-f", format, id).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", id, err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), v); err != nil {
		t.Fatalf("docker inspect %s %s: %v: %s", id, format, err, out)
	}
}

// containerFile reads one file out of a container (docker cp, which works
// on a FROM-scratch image with no cat).
func containerFile(t *testing.T, ctx context.Context, id, path string) []byte {
	t.Helper()
	out, err := exec.CommandContext(ctx, "docker", "cp", id+":"+path, "-").Output()
	if err != nil {
		t.Fatalf("docker cp %s:%s: %v", id, path, err)
	}
	tr := tar.NewReader(bytes.NewReader(out))
	if _, err := tr.Next(); err != nil {
		t.Fatalf("docker cp %s:%s: %v", id, path, err)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func isPEM(data []byte) bool {
	b, _ := pem.Decode(data)
	return b != nil && b.Type == "CERTIFICATE"
}

// assertUnprivileged checks that process pid runs as the image's user with
// no effective, permitted or bounding capabilities.
func assertUnprivileged(t *testing.T, pid int, what string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s (pid %d): %v", what, pid, err)
	}
	want := map[string]string{
		"Uid":    strings.Repeat(imageUID+"\t", 3) + imageUID,
		"Gid":    strings.Repeat(imageUID+"\t", 3) + imageUID,
		"CapEff": "0000000000000000",
		"CapPrm": "0000000000000000",
		"CapBnd": "0000000000000000",
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if w, ok := want[k]; ok && strings.TrimSpace(v) != w {
			t.Errorf("%s (pid %d): %s %q, want %q", what, pid, k, strings.TrimSpace(v), w)
		}
	}
}

// xrayChild is the pid of the xray process among pid's children (of any
// of its threads: a child is listed under the thread that forked it).
func xrayChild(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		all = append(all, strings.Fields(string(data))...)
	}
	for _, f := range all {
		child, _ := strconv.Atoi(f)
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", child))
		if strings.TrimSpace(string(comm)) == "xray" {
			return child
		}
	}
	t.Fatalf("vpnd (pid %d) has no xray child (children %v)", pid, all)
	return 0
}

// apiClient calls the gateway's HTTP API with a bearer token.
type apiClient struct {
	base  string
	token string
}

func (c apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return errors.New(method + " " + path + ": " + resp.Status + ": " + string(data))
	}
	return json.Unmarshal(data, out)
}

// link waits up to within for the user's link of protocol on the server
// (its node applied the server and holds the user) and returns it.
func (c apiClient) link(t *testing.T, userID, serverID string, protocol user.Protocol, within time.Duration) string {
	t.Helper()
	var link string
	waitUntil(t, within, func() error {
		var lr user.LinksResponse
		if err := c.do(context.Background(), http.MethodGet, "/api/v1/users/"+userID+"/links", nil, &lr); err != nil {
			return err
		}
		for _, l := range lr.Links {
			if l.Server == serverID && l.Protocol == protocol {
				link = l.URL
				return nil
			}
		}
		return fmt.Errorf("no %s link on %s: %+v", protocol, serverID, lr)
	})
	return link
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
