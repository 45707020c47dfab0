package xraytest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// startDyingWithParent starts cmd so that the kernel kills it if the test
// binary dies first (a timeout panic, a kill): no Xray outlives its test.
// The returned wait reaps it, like cmd.Wait.
//
// The kernel sends that signal when the thread that forked the child ends,
// not the process (prctl(2), PR_SET_PDEATHSIG), and Go ends threads: the
// agent's process runtime narrows its privileges on a locked thread it
// then throws away. A child forked from whatever thread the calling
// goroutine ran on could be killed mid-test, so children are forked from
// one thread kept locked while any of them runs, and ended after the last.
func startDyingWithParent(cmd *exec.Cmd) (wait func() error, err error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	done := make(chan error, 1)
	spawner.acquire() <- func() { done <- cmd.Start() }
	if err := <-done; err != nil {
		spawner.release()
		return nil, err
	}
	return func() error {
		defer spawner.release()
		return cmd.Wait()
	}, nil
}

// spawner is the thread children are forked from.
var spawner forker

// forker runs jobs on one locked thread while any child it started runs.
type forker struct {
	mu   sync.Mutex
	jobs chan func() // nil while no child runs
	live int         // children started and not yet reaped
}

// acquire counts one more child and returns where to send its start.
func (f *forker) acquire() chan<- func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.jobs == nil {
		jobs := make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends after the last child
			for job := range jobs {
				job()
			}
		}()
		f.jobs = jobs
	}
	f.live++
	return f.jobs
}

// release counts one child fewer, ending the thread after the last.
func (f *forker) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live--; f.live == 0 {
		close(f.jobs)
		f.jobs = nil
	}
}
