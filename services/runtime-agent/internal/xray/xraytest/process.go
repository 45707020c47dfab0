package xraytest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// ReadyTimeout bounds how long Start and WaitListening wait for Xray.
const ReadyTimeout = 30 * time.Second

// Process is a running Xray. Start kills it when the test ends.
type Process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // the result of Wait, valid once done is closed
}

// Start runs `xray run` with config (JSON) and waits until every address in
// waitAddrs accepts TCP connections, failing the test if Xray exits or does
// not get there within ReadyTimeout. The process is killed and reaped in
// t.Cleanup; its output is logged when the test failed.
func Start(t testing.TB, bin string, config []byte, waitAddrs ...string) *Process {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatalf("writing xray config: %v", err)
	}
	p := &Process{out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-c", path)
	p.cmd.Dir = dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	// Xray looks for geo data next to its binary or here; none is needed.
	p.cmd.Env = append(os.Environ(), "XRAY_LOCATION_ASSET="+dir)
	wait, err := startDyingWithParent(p.cmd)
	if err != nil {
		t.Fatalf("starting xray: %v", err)
	}
	go func() {
		p.err = wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("xray output (%s):\n%s", path, p.Output())
		}
	})
	p.WaitListening(t, waitAddrs...)
	return p
}

// WaitListening polls until every address accepts a TCP connection, failing
// the test if the process exits first or ReadyTimeout passes.
func (p *Process) WaitListening(t testing.TB, addrs ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	for _, addr := range addrs {
		for {
			if p.Exited() {
				t.Fatalf("xray exited before listening on %s: %v\n%s", addr, p.err, p.Output())
			}
			c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("xray not listening on %s after %s: %v\n%s", addr, ReadyTimeout, err, p.Output())
			case <-p.done:
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process and waits until it is reaped. It is idempotent.
func (p *Process) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Output returns what the process has written so far.
func (p *Process) Output() string { return p.out.String() }

// CheckConfig runs `xray run -test` on config and returns its complaint, if
// any, so tests can prove a generated config is one Xray accepts.
func CheckConfig(t testing.TB, bin string, config []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatalf("writing xray config: %v", err)
	}
	out, err := exec.Command(bin, "run", "-test", "-c", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("xray rejected the config: %w\n%s", err, out)
	}
	return nil
}

// handedOut holds every port FreePort returned in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that it has not returned before in this process: the kernel may hand the
// same ephemeral port out twice in a row, and two Xray inbounds given one
// port both listen on it (SO_REUSEPORT) and share its connections.
func FreePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		handedOut.Lock()
		seen := handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.Unlock()
		if !seen {
			return port
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PID is the Xray process's id.
func (p *Process) PID() int { return p.cmd.Process.Pid }
