// Package lifecycle is what every main and run function shares: a signal
// context, exit codes, and ordered shutdown under a fresh deadline.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// RunFunc is the signature of every binary's run function: everything main
// would do, testable in-process.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Main runs run with a context cancelled by SIGINT or SIGTERM and exits:
// 0 on success or -h, 2 on bad usage or configuration (an Invalid error),
// 1 on any other failure. The error is printed as one line on stderr.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	os.Exit(ExitCode(os.Stderr, name, err))
}

// ExitCode prints err (if any) as one line prefixed by name and returns the
// process exit code for it.
func ExitCode(stderr io.Writer, name string, err error) int {
	switch {
	case err == nil, errors.Is(err, config.ErrHelp):
		return 0
	case errs.ClassOf(err) == errs.Invalid:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
}

// Closer is one step of shutdown.
type Closer struct {
	Name  string
	Close func(ctx context.Context) error
}

// Stack collects shutdown steps as things start and runs them in reverse
// order, so what started last stops first (stop intake, drain NATS, close
// stores).
type Stack struct {
	log   *slog.Logger
	steps []Closer
}

// NewStack returns an empty stack that logs failed steps.
func NewStack(log *slog.Logger) *Stack { return &Stack{log: log} }

// Push adds a step.
func (s *Stack) Push(name string, fn func(ctx context.Context) error) {
	s.steps = append(s.steps, Closer{Name: name, Close: fn})
}

// PushFunc adds a step that cannot fail.
func (s *Stack) PushFunc(name string, fn func()) {
	s.Push(name, func(context.Context) error { fn(); return nil })
}

// Close runs every step in reverse order under a fresh deadline derived from
// ctx without its cancellation (the run context is usually already done),
// and returns the errors joined.
func (s *Stack) Close(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	var all []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		st := s.steps[i]
		if err := st.Close(ctx); err != nil {
			s.log.Warn("shutting down", logkey.Component, st.Name, logkey.Err, err)
			all = append(all, fmt.Errorf("stopping %s: %w", st.Name, err))
		}
	}
	s.steps = nil
	return errors.Join(all...)
}
