package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
)

type group struct {
	URL   string `flag:"url" env:"T_URL" help:"url"`
	Token string `flag:"token" env:"T_TOKEN" secret:"true" help:"token"`
}

type testConfig struct {
	Group   group
	Port    int           `flag:"port" env:"T_PORT" help:"port"`
	Wait    time.Duration `flag:"wait" env:"T_WAIT" help:"wait"`
	Verbose bool          `flag:"verbose" env:"T_VERBOSE" help:"verbose"`
	Tags    []string      `flag:"tags" env:"T_TAGS" help:"tags"`
}

func (c *testConfig) Validate() error {
	if c.Port > 65535 {
		return errs.Field("port", "must be at most 65535")
	}
	return nil
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	file := writeFile(t, "url = \"file\"\nport = 2\nwait = \"3s\"\ntags = [\"a\", \"b\"]\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want testConfig
	}{
		{"defaults", nil, nil, testConfig{Group: group{URL: "default"}, Port: 1}},
		{"file over defaults", []string{"--config", file}, nil,
			testConfig{Group: group{URL: "file"}, Port: 2, Wait: 3 * time.Second, Tags: []string{"a", "b"}}},
		{"env over file", []string{"--config", file}, map[string]string{"T_URL": "env", "T_TAGS": "x, y"},
			testConfig{Group: group{URL: "env"}, Port: 2, Wait: 3 * time.Second, Tags: []string{"x", "y"}}},
		{"flag over env", []string{"--config", file, "--url=flag", "--verbose"}, map[string]string{"T_URL": "env"},
			testConfig{Group: group{URL: "flag"}, Port: 2, Wait: 3 * time.Second, Verbose: true, Tags: []string{"a", "b"}}},
		{"config path from env", nil, map[string]string{"VPN_CONFIG": file},
			testConfig{Group: group{URL: "file"}, Port: 2, Wait: 3 * time.Second, Tags: []string{"a", "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig{Group: group{URL: "default"}, Port: 1}
			if err := config.Load("t", &c, tt.args, env(tt.env), &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if c.Group != tt.want.Group || c.Port != tt.want.Port || c.Wait != tt.want.Wait ||
				c.Verbose != tt.want.Verbose || strings.Join(c.Tags, ",") != strings.Join(tt.want.Tags, ",") {
				t.Fatalf("got %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestBadInputIsInvalidAndNamesTheProblem(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		file string
		want string
	}{
		{"unknown flag", []string{"--nope"}, nil, "", "-nope"},
		{"stray argument", []string{"extra"}, nil, "", `"extra"`},
		{"bad int flag", []string{"--port=x"}, nil, "", "--port"},
		{"bad duration env", nil, map[string]string{"T_WAIT": "soon"}, "", "T_WAIT"},
		{"unreadable file", []string{"--config", "/nonexistent/c.toml"}, nil, "", "/nonexistent/c.toml"},
		{"unknown key", nil, nil, "colour = 1\n", `"colour"`},
		{"malformed toml", nil, nil, "url = \n", "parsing config file"},
		{"validation", []string{"--port=70000"}, nil, "", "port: must be at most 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file))
			}
			var c testConfig
			err := config.Load("t", &c, args, env(tt.env), &bytes.Buffer{})
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q does not name %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("err spans lines: %q", err)
			}
		})
	}
}

func TestHelpPrintsUsage(t *testing.T) {
	var out bytes.Buffer
	var c testConfig
	err := config.Load("t", &c, []string{"-h"}, env(nil), &out)
	if !errors.Is(err, config.ErrHelp) {
		t.Fatalf("err %v, want ErrHelp", err)
	}
	if strings.Count(out.String(), "Usage:") != 1 {
		t.Fatalf("usage printed %d times:\n%s", strings.Count(out.String(), "Usage:"), out.String())
	}
	if !strings.Contains(out.String(), "--port") || !strings.Contains(out.String(), "env T_PORT") {
		t.Fatalf("usage lacks flags and env names:\n%s", out.String())
	}
}

func TestRedactedMasksSecrets(t *testing.T) {
	c := testConfig{Group: group{URL: "u", Token: "s3cret"}, Wait: time.Second}
	r := config.Redacted(&c)
	if r["token"] != "***" || r["url"] != "u" || r["wait"] != "1s" {
		t.Fatalf("redacted %v", r)
	}
}

// TestBadFlagIsOneLine: a mistyped flag gets one line naming it and exit
// code 2, not the whole usage (which -h prints).
func TestBadFlagIsOneLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag --bogus"},
		{[]string{"-bogus=1"}, "unknown flag --bogus"},
		{[]string{"--port"}, "flag --port needs a value"},
		{[]string{"--verbose=maybe"}, "--verbose"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var usage, stderr bytes.Buffer
			var c testConfig
			err := config.Load("t", &c, tt.args, env(nil), &usage)
			if usage.Len() > 0 {
				t.Fatalf("usage printed for a bad flag:\n%s", usage.String())
			}
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			if code := lifecycle.ExitCode(&stderr, "t", err); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			if got := stderr.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, tt.want) || !strings.Contains(got, "t -h") {
				t.Fatalf("stderr %q: want one line naming %q and pointing at t -h", got, tt.want)
			}
		})
	}
}

type sharedA struct {
	Addr    string        `flag:"addr" env:"T_A_ADDR" help:"a's address"`
	Timeout time.Duration `flag:"timeout" env:"T_A_TIMEOUT" help:"a's timeout"`
}

type sharedB struct {
	Addr    string        `flag:"addr" env:"T_B_ADDR" help:"b's address"`
	Timeout time.Duration `flag:"timeout" env:"T_B_TIMEOUT" help:"b's timeout"`
}

type sharedConfig struct {
	A sharedA
	B sharedB
}

// TestSharedFlagSetsEveryField checks that groups composed into one binary
// that declare the same flag get one flag (no panic on a duplicate), which
// sets both fields, as the TOML key does; env variables stay per field.
func TestSharedFlagSetsEveryField(t *testing.T) {
	file := writeFile(t, "timeout = \"7s\"\n")
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want sharedConfig
	}{
		{"defaults stay apart", nil, nil,
			sharedConfig{sharedA{"a", time.Second}, sharedB{"b", 2 * time.Second}}},
		{"a flag sets both", []string{"--addr", "x", "--timeout", "5s"}, nil,
			sharedConfig{sharedA{"x", 5 * time.Second}, sharedB{"x", 5 * time.Second}}},
		{"a file key sets both", []string{"--config", file}, nil,
			sharedConfig{sharedA{"a", 7 * time.Second}, sharedB{"b", 7 * time.Second}}},
		{"env is per field", nil, map[string]string{"T_B_ADDR": "envb"},
			sharedConfig{sharedA{"a", time.Second}, sharedB{"envb", 2 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := sharedConfig{sharedA{"a", time.Second}, sharedB{"b", 2 * time.Second}}
			if err := config.Load("t", &c, tt.args, env(tt.env), &bytes.Buffer{}); err != nil {
				t.Fatal(err)
			}
			if c != tt.want {
				t.Fatalf("got %+v, want %+v", c, tt.want)
			}
		})
	}
	var usage bytes.Buffer
	c := sharedConfig{sharedA{"a", time.Second}, sharedB{"b", 2 * time.Second}}
	if err := config.Load("t", &c, []string{"-h"}, env(nil), &usage); !errors.Is(err, config.ErrHelp) {
		t.Fatal(err)
	}
	if n := strings.Count(usage.String(), "--addr"); n != 1 || !strings.Contains(usage.String(), "a's address") {
		t.Fatalf("usage lists --addr %d times:\n%s", n, usage.String())
	}
}
