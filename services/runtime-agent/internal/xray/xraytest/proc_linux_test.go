package xraytest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestChildOutlivesTheThreadThatAskedForIt: a test's Xray client was once
// killed in the middle of TestPrivateNetworkPolicyConverges because the
// thread it had been forked from ended (the agent's process runtime throws
// away threads it narrows privileges on, and PR_SET_PDEATHSIG fires when
// the forking thread ends, not the process). Here a child is started from
// a goroutine whose thread is then ended on purpose; it must still answer.
func TestChildOutlivesTheThreadThatAskedForIt(t *testing.T) {
	cmd := exec.Command("cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// The Go runtime never ends the main thread (it parks a goroutine that
	// exits locked to it instead), so the child is asked for from another.
	var (
		thread int
		wait   func() error
	)
	for thread == 0 {
		started := make(chan func() error, 1)
		tid := make(chan int, 1)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				runtime.UnlockOSThread()
				tid <- 0
				return
			}
			tid <- unix.Gettid()
			wait, err := startDyingWithParent(cmd)
			if err != nil {
				t.Error(err)
			}
			started <- wait
		}() // exits locked to its thread, which ends with it
		if thread = <-tid; thread != 0 {
			wait = <-started
		}
	}
	if wait == nil {
		t.FailNow()
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = wait()
	})
	// Once the thread is gone from /proc its exit, and with it any
	// parent-death signal, has been delivered.
	waitfor.Cond(t, 10*time.Second, func() error {
		if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", thread)); err == nil {
			return fmt.Errorf("thread %d still runs", thread)
		}
		return nil
	})
	if _, err := io.WriteString(stdin, "ping\n"); err != nil {
		t.Fatalf("the child is gone with the thread that started it: %v", err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("the child is gone with the thread that started it: read %q, %v", line, err)
	}
}
