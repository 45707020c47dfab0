// Package app is the vpn command tree (cobra): every command is a thin
// call of the gateway's HTTP API through package client, printed through
// package output. Execute runs it against an Env, so tests drive the real
// commands with their own stdin, stdout, environment and gateway.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/config"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// Env is the world a command runs in.
type Env struct {
	Getenv func(string) string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Interactive reports whether Stdin and Stderr (where prompts go) are
	// a terminal, so prompts are allowed.
	Interactive bool
	// Terminal reports whether Stdout is a terminal, so progress is a live
	// bar (plain lines otherwise).
	Terminal bool
	// Now is the clock ages are measured with (time.Now when nil).
	Now func() time.Time
	// HTTP is the client used (a default one when nil).
	HTTP *http.Client
	// BackupWorkFactor is scrypt's work factor of encrypted backups (0:
	// backup.DefaultWorkFactor); tests lower it.
	BackupWorkFactor int
}

// UsageError is a command line that cannot be run as typed (exit code 2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// app holds the global flags.
type app struct {
	env       Env
	flagURL   string
	flagToken string
	format    string
	quiet     bool
}

// Execute runs the command line args.
func Execute(ctx context.Context, args []string, env Env) error {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	a := &app{env: env}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	_, err := root.ExecuteContextC(ctx)
	if err != nil && isCobraUsage(err) {
		return &UsageError{Err: err}
	}
	return err
}

// isCobraUsage recognises cobra's own usage errors, which it returns
// unwrapped.
func isCobraUsage(err error) bool {
	var ue *UsageError
	if errors.As(err, &ue) {
		return false
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "invalid argument", "flag needs an argument", "accepts ", "requires at least", "required flag", "invalid output"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:   "vpn",
		Short: "Manage a vpnfleet control plane: users, bulk jobs, servers, nodes, events",
		Long: `vpn talks to the vpnfleet gateway (vpnd's HTTP API).

Start vpnd with 'make run', then 'vpn init' deploys a first server (an
inbound for every protocol) and a first user. 'vpn login' points vpn at
another gateway.`,
		Example:       "  vpn init\n  vpn users create alice --limit 50GiB\n  vpn users link alice --qr\n  vpn --url https://vpn.example.com users list -o json",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(output.Formats, a.format) {
				return usagef("invalid output format %q: use table, json or yaml", a.format)
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flagURL, "url", "", "gateway URL (default: config file, VPN_URL, then "+config.DefaultURL+")")
	pf.StringVar(&a.flagToken, "token", "", "API token (default: config file, then VPN_TOKEN)")
	pf.StringVarP(&a.format, "output", "o", "table", "output format: table, json or yaml")
	pf.BoolVarP(&a.quiet, "quiet", "q", false, "print only ids (or nothing), for scripts")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	root.CompletionOptions.HiddenDefaultCmd = false

	root.AddCommand(
		a.loginCmd(), a.initCmd(), a.statusCmd(), a.versionCmd(),
		a.usersCmd(), a.serversCmd(), a.nodesCmd(), a.eventsCmd(), a.tokensCmd(), a.jobsCmd(), a.alertsCmd(),
		a.backupCmd(), a.runtimeCmd(),
	)
	return root
}

// args is cobra.ExactArgs with a usage error naming what is expected.
func args(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, got []string) error {
		if len(got) != n {
			return usagef("%s takes %s (got %d arguments); see `%s --help`", cmd.CommandPath(), what, len(got), cmd.CommandPath())
		}
		return nil
	}
}

// settings resolves the gateway URL and token.
func (a *app) settings() (config.File, string, error) {
	path, err := config.Path(a.env.Getenv)
	if err != nil {
		return config.File{}, "", err
	}
	f, err := config.Load(path)
	if err != nil {
		return config.File{}, path, err
	}
	return config.Resolve(a.flagURL, a.flagToken, a.env.Getenv, f), path, nil
}

func (a *app) client() (*client.Client, error) {
	s, _, err := a.settings()
	if err != nil {
		return nil, err
	}
	c := client.New(s.URL, s.Token, "vpn/"+version.Version)
	if a.env.HTTP != nil {
		c.HTTP = a.env.HTTP
	}
	return c, nil
}

func (a *app) printer() output.Printer {
	w, _ := strconv.Atoi(a.env.Getenv("COLUMNS"))
	if w <= 0 {
		w = 120
	}
	return output.Printer{W: a.env.Stdout, Format: a.format, Quiet: a.quiet, Width: w}
}

// info prints a note for people on stderr (never on stdout, which scripts
// read), unless --quiet.
func (a *app) info(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintln(a.env.Stderr, output.Sprintf(format, args...))
	}
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the vpn version",
		Example: "  vpn version\n  vpn version -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := a.printer()
			if p.Structured() {
				return p.Value(map[string]string{"version": version.Version})
			}
			p.Line("vpn %s", version.Version)
			return nil
		},
	}
}

// printList prints a list the way every list command does: the items as
// JSON or YAML when asked, one id per line with --quiet, else a table with
// one row per item (row gets the time the table is drawn, for ages).
func printList[T any](a *app, items []T, id func(T) string, header []string, row func(T, time.Time) []string) error {
	p := a.printer()
	switch {
	case p.Structured():
		return p.Value(items)
	case a.quiet:
		for _, it := range items {
			p.Line("%s", id(it))
		}
		return nil
	}
	now := a.env.Now()
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = row(it, now)
	}
	return p.Table(header, rows)
}
