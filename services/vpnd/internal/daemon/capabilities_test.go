package daemon_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestVPNDKeepsOnlyWhatItsAgentUses runs the real vpnd binary as root with
// its local agent on the process runtime (issue 17: vpnd embeds an agent,
// and keeps what that agent uses, nothing more): once ready, every thread
// holds exactly CAP_CHOWN, CAP_KILL, CAP_SETGID, CAP_SETUID, CAP_SETPCAP
// and CAP_NET_BIND_SERVICE as effective, permitted and bounding
// capabilities, none inheritable or ambient, with no_new_privs; and it
// still stops cleanly.
func TestVPNDKeepsOnlyWhatItsAgentUses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root, whose capabilities vpnd drops (CI runs as root)")
	}
	bin := filepath.Join(t.TempDir(), "vpnd")
	build := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/vpnd/cmd/vpnd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds it
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vpnd: %v\n%s", err, out)
	}
	out := &syncBuffer{}
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--ops-addr", "", "--nats-listen", "",
		"--runtime", "process", "--public-addr", "127.0.0.1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitfor.Cond(t, time.Minute, func() error {
		if _, ok := findReady(out.String()); !ok {
			return errors.New("no ready line yet")
		}
		return nil
	})
	// CHOWN 0, KILL 5, SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10.
	const keep = 1<<0 | 1<<5 | 1<<6 | 1<<7 | 1<<8 | 1<<10
	want := threadCaps{eff: keep, prm: keep, bnd: keep, nnp: true}
	// The agent limits them once its runtime is open, after vpnd is ready.
	waitfor.Cond(t, time.Minute, func() error {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", cmd.Process.Pid))
		if err != nil {
			return err
		}
		for _, task := range tasks {
			got, err := readThreadCaps(fmt.Sprintf("/proc/%d/task/%s/status", cmd.Process.Pid, task.Name()))
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("thread %s holds %+v, want %+v", task.Name(), got, want)
			}
		}
		return nil
	})
	if !strings.Contains(out.String(), "agent capabilities limited to what it uses") {
		t.Errorf("vpnd does not log what its agent kept:\n%s", out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM: want exit 0, got %v\n%s", err, out.String())
	}
}

// threadCaps is what /proc/<pid>/task/<tid>/status says of a thread's
// capabilities.
type threadCaps struct {
	eff, prm, inh, bnd, amb uint64
	nnp                     bool
}

func readThreadCaps(path string) (threadCaps, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return threadCaps{}, err
	}
	var c threadCaps
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		dst := map[string]*uint64{"CapEff": &c.eff, "CapPrm": &c.prm, "CapInh": &c.inh, "CapBnd": &c.bnd, "CapAmb": &c.amb}[k]
		switch {
		case dst != nil:
			if *dst, err = strconv.ParseUint(v, 16, 64); err != nil {
				return threadCaps{}, fmt.Errorf("%s of %s: %w", k, path, err)
			}
		case k == "NoNewPrivs":
			c.nnp = v == "1"
		}
	}
	return c, nil
}
