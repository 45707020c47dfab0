package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestInstallAgentFromTheGateway installs an agent as an operator does on
// a new host: a real vpnd (built from source, NATS over TLS) serves the
// installer and the binaries from --agent-binaries; the line `vpn nodes
// add` prints runs with sh into a temporary root with --no-start (no
// systemd runs as PID 1 here). The installed files are checked (the
// binaries are the served ones, the unit and sysusers file are
// deploy/systemd's, the env file holds the settings and no token), a
// second run upgrades in place and keeps the credential, and the installed
// vpn-agent, started as the unit's ExecStart with the env file, joins and
// serves a user whose link a real Xray client passes traffic through.
// Bad input leaves the root empty: a used token, an expired one, one for
// another node, an architecture the gateway has no binary for.
func TestInstallAgentFromTheGateway(t *testing.T) {
	shellcheck := requireTool(t, "shellcheck")
	requireTool(t, "systemd-sysusers")
	root := repoRoot(t)
	bins := t.TempDir()
	buildBinary(t, root, "./services/vpnd/cmd/vpnd", filepath.Join(bins, "vpnd"))
	buildBinary(t, root, "./services/runtime-agent/cmd/vpn-agent", filepath.Join(bins, "vpn-agent"))
	copyExecutable(t, xraytest.Binary(t), filepath.Join(bins, "xray"))

	vpnd := startVPND(t, bins)
	api := apiClient{base: vpnd.gateway, token: vpnd.adminToken}
	ctx := context.Background()

	var added node.AddResponse
	// vpnd is ready before its fleet service answers the first time.
	waitUntil(t, time.Minute, func() error {
		return api.do(ctx, http.MethodPost, "/api/v1/nodes", map[string]any{"name": "edge1", "groups": []string{"eu"}}, &added)
	})
	wantCmd := "curl -fsSL '" + vpnd.gateway + "/install/agent.sh' | sh -s -- --token " + added.Token
	if added.InstallCommand != wantCmd {
		t.Fatalf("install command %q, want %q", added.InstallCommand, wantCmd)
	}

	// The script as served passes shellcheck and holds no secret.
	script := httpGet(t, vpnd.gateway+"/install/agent.sh")
	if bytes.Contains(script, []byte(added.Token)) || bytes.Contains(script, []byte(vpnd.adminToken)) {
		t.Fatal("the served script holds a token")
	}
	scriptFile := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(scriptFile, script, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(shellcheck, "--shell=sh", "--severity=style", scriptFile).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck of the served script: %v\n%s", err, out)
	}

	// The printed line, run as printed, with what a test host needs.
	host := t.TempDir()
	opsPort := xraytest.FreePort(t)
	extra := " --root " + host + " --no-start --runtime process --env VPN_ALLOW_PRIVATE_NETWORKS=true" +
		" --env VPN_PUBLIC_ADDR=127.0.0.1 --env VPN_OPS_ADDR=127.0.0.1:" + fmt.Sprint(opsPort)
	out := runInstall(t, added.InstallCommand+extra)
	if !strings.Contains(out, "vpn-agent installed as node edge1, not started (--no-start)") {
		t.Fatalf("install said:\n%s", out)
	}

	// What is installed.
	sums := string(httpGet(t, vpnd.gateway+"/install/checksums?os=linux&arch="+runtime.GOARCH))
	for _, b := range []string{"vpn-agent", "xray"} {
		got := fileSHA256(t, filepath.Join(host, "usr/local/bin", b))
		if got != fileSHA256(t, filepath.Join(bins, b)) || !strings.Contains(sums, got+"  "+b+"\n") {
			t.Errorf("installed %s has SHA-256 %s; served %s; checksums say %q", b, got, fileSHA256(t, filepath.Join(bins, b)), sums)
		}
		assertMode(t, filepath.Join(host, "usr/local/bin", b), 0o755)
	}
	for installed, shipped := range map[string]string{
		"etc/systemd/system/vpn-agent.service": "deploy/systemd/vpn-agent.service",
		"usr/lib/sysusers.d/vpnfleet.conf":     "deploy/systemd/vpnfleet.sysusers",
	} {
		if !bytes.Equal(readFile(t, filepath.Join(host, installed)), readFile(t, filepath.Join(root, shipped))) {
			t.Errorf("%s differs from %s", installed, shipped)
		}
	}
	if passwd := string(readFile(t, filepath.Join(host, "etc/passwd"))); !strings.Contains(passwd, "\nvpn-agent:") && !strings.HasPrefix(passwd, "vpn-agent:") {
		t.Errorf("no vpn-agent user in the root's /etc/passwd:\n%s", passwd)
	}
	envFile := filepath.Join(host, "etc/vpnfleet/vpn-agent.env")
	assertMode(t, envFile, 0o600)
	env := readFile(t, envFile)
	for _, want := range []string{"VPN_RUNTIME=process\n", "VPN_PUBLIC_ADDR=127.0.0.1\n", "VPN_ALLOW_PRIVATE_NETWORKS=true\n"} {
		if !bytes.Contains(env, []byte(want)) {
			t.Errorf("env file lacks %q:\n%s", want, env)
		}
	}
	if bytes.Contains(env, []byte("vpnjoin1.")) {
		t.Errorf("the env file keeps the join token:\n%s", env)
	}
	dataDir := filepath.Join(host, "var/lib/vpn-agent")
	assertMode(t, dataDir, 0o700)
	creds := readFile(t, filepath.Join(dataDir, "nats", "node.creds"))

	// Running it again upgrades in place: same line, same token (used and
	// kept nowhere but in the operator's history), one setting changed.
	out = runInstall(t, added.InstallCommand+strings.Replace(extra, "VPN_PUBLIC_ADDR=127.0.0.1", "VPN_PUBLIC_ADDR=127.0.0.1 --env VPN_LOG_LEVEL=debug", 1))
	if !strings.Contains(out, "installed as node edge1") || !bytes.Equal(readFile(t, filepath.Join(dataDir, "nats", "node.creds")), creds) {
		t.Fatalf("the second run did not keep the credential:\n%s", out)
	}
	if env2 := readFile(t, envFile); bytes.Count(env2, []byte("VPN_PUBLIC_ADDR=")) != 1 || !bytes.Contains(env2, []byte("VPN_LOG_LEVEL=debug\n")) {
		t.Fatalf("env file after the second run:\n%s", env2)
	}

	// The installed agent, started as the unit would start it.
	stopAgent := startAsUnit(t, host)
	t.Cleanup(func() { stopAgent() })
	waitUntil(t, time.Minute, func() error {
		var nodes struct {
			Nodes []struct {
				ID      string `json:"id"`
				Healthy bool   `json:"healthy"`
			} `json:"nodes"`
		}
		if err := api.do(ctx, http.MethodGet, "/api/v1/nodes", nil, &nodes); err != nil {
			return err
		}
		for _, n := range nodes.Nodes {
			if n.ID == "edge1" && n.Healthy {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v: edge1 not healthy yet", nodes.Nodes)
	})

	const sni = "install.example"
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	var srv server.Server
	if err := api.do(ctx, http.MethodPost, "/api/v1/servers", server.CreateRequest{Node: "edge1", Name: "edge", Inbounds: []server.InboundRequest{{
		Tag: "vless", Protocol: user.VLESSReality, Port: xraytest.FreePort(t), Listen: "127.0.0.1", Dest: dest, ServerNames: []string{sni},
	}}}, &srv); err != nil {
		t.Fatalf("deploying a server on edge1: %v", err)
	}
	t.Cleanup(func() {
		removeServer(t, api, srv.ID)
		noXrayUnder(t, host)
	})
	var u user.User
	if err := api.do(ctx, http.MethodPost, "/api/v1/users", user.CreateRequest{Name: "alice", Placement: &user.Placement{Groups: []string{"eu"}}}, &u); err != nil {
		t.Fatalf("creating a user: %v", err)
	}
	link := api.link(t, u.ID, srv.ID, user.VLESSReality, 2*time.Minute)
	client := xraytest.StartClient(t, xraytest.Binary(t), outbound(t, link))
	connects(t, client, target, "alice through the installed agent")

	t.Run("bad input installs nothing", func(t *testing.T) {
		trust, err := natsauth.LoadOrCreate(filepath.Join(vpnd.dataDir, "nats"))
		if err != nil {
			t.Fatal(err)
		}
		expires := time.Unix(time.Now().Add(2*time.Second).Unix(), 0)
		cred, err := trust.JoinCredential("expiredtoken", expires)
		if err != nil {
			t.Fatal(err)
		}
		expired := natsauth.JoinToken{URLs: []string{vpnd.natsURL}, CAFingerprint: caFingerprint(t, added.Token), Node: "edge9",
			TokenID: "expiredtoken", JWT: cred.JWT, Seed: string(cred.Seed), Expires: expires}.Encode()
		waitfor.Cond(t, 10*time.Second, func() error {
			if !time.Now().After(expires) {
				return errors.New("the crafted token has not expired yet")
			}
			return nil
		})
		var other node.AddResponse
		if err := api.do(ctx, http.MethodPost, "/api/v1/nodes", map[string]any{"name": "edge2"}, &other); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ name, cmd, want string }{
			{"used token", added.InstallCommand, "joining as node edge1"},
			{"expired token", "curl -fsSL '" + vpnd.gateway + "/install/agent.sh' | sh -s -- --token " + expired, "join_token.expires"},
			{"token for another node", other.InstallCommand + " --name edge3", "node_id"},
			{"no binary for the architecture", other.InstallCommand + " --arch arm64", "the gateway answered 404"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				fresh := t.TempDir()
				cmd := exec.Command("sh", "-c", tc.cmd+" --root "+fresh+" --no-start")
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "nothing was installed") {
					t.Fatalf("exit %v, want 1 saying %q and that nothing was installed:\n%s", err, tc.want, out)
				}
				if ents, _ := os.ReadDir(fresh); len(ents) != 0 {
					t.Fatalf("the root holds %v after a refusal", ents)
				}
			})
		}
	})
}

// vpndProcess is a vpnd binary running for a test.
type vpndProcess struct {
	gateway, natsURL, dataDir, adminToken string
}

// startVPND runs the vpnd binary in bins without a local agent, NATS on
// TLS on loopback, serving bins to new hosts, until the test ends.
func startVPND(t *testing.T, bins string) vpndProcess {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bins, "vpnd"), "--data-dir", dir,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", xraytest.FreePort(t)), "--ops-addr", fmt.Sprintf("127.0.0.1:%d", xraytest.FreePort(t)),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", xraytest.FreePort(t)), "--nats-tls", "on",
		"--agent=false", "--agent-binaries", bins)
	logs, done, stop := startProcess(t, "vpnd", cmd)
	t.Cleanup(stop)
	var ready struct {
		Msg     string `json:"msg"`
		Gateway string `json:"gateway_url"`
		NATS    string `json:"nats_url"`
	}
	waitfor.Cond(t, time.Minute, func() error {
		select {
		case err := <-done:
			t.Fatalf("vpnd exited: %v\n%s", err, logs.String())
		default:
		}
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			if json.Unmarshal(sc.Bytes(), &ready) == nil && ready.Msg == "vpnd ready" {
				return nil
			}
		}
		return errors.New("no ready line yet")
	})
	return vpndProcess{gateway: ready.Gateway, natsURL: ready.NATS, dataDir: dir,
		adminToken: strings.TrimSpace(string(readFile(t, filepath.Join(dir, "admin.token"))))}
}

// startAsUnit starts the installed vpn-agent as the installed unit's
// ExecStart= would, paths moved under host: with its EnvironmentFile=, as
// its User= (the user the installer created, found in host's passwd) with
// its AmbientCapabilities=, through setpriv. The returned func stops it
// (SIGTERM, as systemctl stop does).
func startAsUnit(t *testing.T, host string) func() {
	t.Helper()
	unit := unitSettings(t, filepath.Join(host, "etc/systemd/system/vpn-agent.service"))
	if len(unit["ExecStart"]) != 1 || len(unit["EnvironmentFile"]) != 1 || len(unit["User"]) != 1 || len(unit["AmbientCapabilities"]) != 1 {
		t.Fatalf("unit: ExecStart %v, EnvironmentFile %v, User %v, AmbientCapabilities %v", unit["ExecStart"], unit["EnvironmentFile"], unit["User"], unit["AmbientCapabilities"])
	}
	var uid, gid string
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, filepath.Join(host, "etc/passwd"))))
	for sc.Scan() {
		if f := strings.Split(sc.Text(), ":"); len(f) > 3 && f[0] == unit["User"][0] {
			uid, gid = f[2], f[3]
		}
	}
	if uid == "" {
		t.Fatalf("no user %s in the installed passwd", unit["User"][0])
	}
	// That user reaches the installed files as it would under /: the
	// test's temporary directories above host are root's alone.
	for d := host; d != filepath.Dir(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o005 == 0 && strings.HasPrefix(d, os.TempDir()+"/") {
			if err := os.Chmod(d, st.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
	caps := strings.ToLower(strings.TrimPrefix(unit["AmbientCapabilities"][0], "CAP_"))
	argv := []string{requireTool(t, "setpriv"), "--reuid=" + uid, "--regid=" + gid, "--clear-groups",
		"--inh-caps=+" + caps, "--ambient-caps=+" + caps, "--bounding-set=-all,+" + caps}
	for _, f := range strings.Fields(unit["ExecStart"][0]) {
		if strings.HasPrefix(f, "/") {
			f = filepath.Join(host, f)
		}
		argv = append(argv, f)
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	sc = bufio.NewScanner(bytes.NewReader(readFile(t, filepath.Join(host, strings.TrimPrefix(unit["EnvironmentFile"][0], "-")))))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	_, _, stop := startProcess(t, "installed vpn-agent", cmd)
	return stop
}

// startProcess starts cmd collecting its output. done yields its exit;
// stop signals SIGTERM (as systemctl stop does) and waits, failing the
// test on an unclean exit and showing the output when the test failed.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) (logs *lockedBuffer, done <-chan error, stop func()) {
	t.Helper()
	logs = &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	return logs, exited, func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			if err := <-exited; err != nil {
				t.Errorf("%s: %v\n%s", name, err, logs.String())
			} else if t.Failed() {
				t.Logf("%s's output:\n%s", name, logs.String())
			}
		})
	}
}

// removeServer removes a server and waits until the agent stopped its
// Xray (which outlives an agent by design).
func removeServer(t *testing.T, api apiClient, id string) {
	ctx := context.Background()
	if err := api.do(ctx, http.MethodDelete, "/api/v1/servers/"+id, map[string]any{}, &struct{}{}); err != nil {
		t.Errorf("removing server %s: %v", id, err)
		return
	}
	waitUntil(t, time.Minute, func() error {
		var s server.Server
		err := api.do(ctx, http.MethodGet, "/api/v1/servers/"+id, nil, &s)
		if err == nil {
			return fmt.Errorf("server %s still there: %+v", id, s.Status)
		}
		return nil
	})
}

// noXrayUnder waits until no Xray runs on files under dir (the one the
// installed agent started); what is left then is killed.
func noXrayUnder(t *testing.T, dir string) {
	t.Helper()
	under := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
				continue
			}
			comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
			if cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmdline, []byte(dir)) && string(bytes.TrimSpace(comm)) == "xray" {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	defer func() {
		for _, pid := range under() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}()
	waitfor.Cond(t, time.Minute, func() error {
		if pids := under(); len(pids) > 0 {
			return fmt.Errorf("processes %v still run under %s", pids, dir)
		}
		return nil
	})
}

// runInstall runs an install command line with sh and returns its output.
func runInstall(t *testing.T, line string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", line).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return string(out)
}

func buildBinary(t *testing.T, root, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, readFile(t, from), 0o755); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	s := sha256.Sum256(readFile(t, path))
	return hex.EncodeToString(s[:])
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), want)
	}
}

// caFingerprint is the CA pin of a join token vpnd issued.
func caFingerprint(t *testing.T, token string) string {
	t.Helper()
	tok, err := natsauth.DecodeJoinToken(token)
	if err != nil {
		t.Fatal(err)
	}
	return tok.CAFingerprint
}

// lockedBuffer collects a process's output safely across goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
