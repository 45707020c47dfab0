// Package userstest runs the real vpn-users binary as a separate process,
// for tests that must kill a registry replica with SIGKILL (crash tests in
// this module and, end to end, in the runtime agent's).
package userstest

import (
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/natstest"

	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Build builds vpn-users into a temp dir of tb and returns its path.
func Build(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "vpn-users")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/users/cmd/vpn-users").CombinedOutput()
	if err != nil {
		tb.Fatalf("building vpn-users: %v\n%s", err, out)
	}
	return bin
}

// Process is one running vpn-users (a registry replica).
type Process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin against the test NATS server ns, with its service
// credential (extra flags in args), and waits until it logs that the users
// service started. The process is killed at cleanup if still running.
func Start(tb testing.TB, bin string, ns *natstest.Server, args ...string) *Process {
	tb.Helper()
	cmd := exec.Command(bin, append([]string{"--nats-url", ns.URL(), "--nats-creds", ns.ServiceCredsFile(), "--ops-addr", "", "--log-level", "info"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := false
		for sc.Scan() {
			if !once && strings.Contains(sc.Text(), `"users service started"`) {
				once = true
				close(started)
			}
		}
		_ = cmd.Wait()
	}()
	tb.Cleanup(p.Kill)
	select {
	case <-started:
	case <-p.done:
		tb.Fatal("vpn-users exited before it started")
	case <-time.After(30 * time.Second):
		tb.Fatal("vpn-users did not start")
	}
	return p
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM and waits until the process is gone.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.done
}

// PID is the process id, for benchmarks that read its memory.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// FleetAuthority is what vpnd hands the users service (users.Config.Fleet)
// so that it can sign node credentials, for a test server: its trust, a
// connection of the system account (revocations) and where agents reach it.
func FleetAuthority(tb testing.TB, ns *natstest.Server) *users.FleetAuthority {
	tb.Helper()
	cred, err := ns.Trust().SystemCredential("test")
	if err != nil {
		tb.Fatalf("minting a system credential: %v", err)
	}
	return &users.FleetAuthority{Trust: ns.Trust(), System: ns.ConnAs(tb, cred), URLs: []string{ns.URL()}}
}
