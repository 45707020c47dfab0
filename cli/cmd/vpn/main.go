// Command vpn is the command line of vpnfleet: a thin client of the
// gateway's HTTP API (see internal/app for the commands).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	os.Exit(exitCode(os.Stderr, err))
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return app.Execute(ctx, args, app.Env{
		Getenv: getenv, Stdin: os.Stdin, Stdout: stdout, Stderr: os.Stderr,
		Interactive: isTerminal(os.Stdin) && isTerminal(os.Stderr), Terminal: isTerminal(os.Stdout),
	})
}

// exitCode prints err and returns the exit code: 0 ok (or interrupted),
// 2 for a command line that cannot run as typed, 1 for any other error.
func exitCode(stderr io.Writer, err error) int {
	var ue *app.UsageError
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "vpn: %v\nRun 'vpn --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "vpn: %v\n", err)
	return 1
}

// isTerminal reports whether f is a terminal: a character device is not
// enough (/dev/null is one, and it is stdin under cron, systemd or ssh
// without a tty).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
