package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// TestExitCodes checks the contract scripts rely on: 0 ok, 1 error,
// 2 usage.
func TestExitCodes(t *testing.T) {
	env := map[string]string{"VPN_CONFIG": t.TempDir() + "/config.toml"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		args []string
		code int
		say  string
	}{
		{[]string{"version"}, 0, ""},
		{[]string{"--help"}, 0, ""},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"users", "show"}, 2, "Run 'vpn --help'"},
		{[]string{"users", "list", "--url", "http://127.0.0.1:1"}, 1, "is vpnd running?"},
	}
	for _, c := range cases {
		var stderr bytes.Buffer
		err := run(context.Background(), c.args, getenv, io.Discard)
		if got := exitCode(&stderr, err); got != c.code || !strings.Contains(stderr.String(), c.say) {
			t.Errorf("vpn %v: exit %d (%q), want %d with %q", c.args, got, stderr.String(), c.code, c.say)
		}
	}
	if got := exitCode(io.Discard, context.Canceled); got != 0 {
		t.Errorf("interrupted: exit %d", got)
	}
	if got := exitCode(io.Discard, errors.New("x")); got != 1 {
		t.Errorf("error: exit %d", got)
	}
}

// TestNoTerminal: prompts are only for a terminal. Stdin from /dev/null
// (cron, systemd, ssh without -t) is a character device but not a
// terminal, and neither is a pipe.
func TestNoTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, f := range map[string]*os.File{"/dev/null": null, "pipe": r, "file": mustTemp(t)} {
		if isTerminal(f) {
			t.Errorf("%s is taken for a terminal", name)
		}
	}
}

func mustTemp(t *testing.T) *os.File {
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
