package install

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func TestParsePlatform(t *testing.T) {
	for _, tc := range []struct {
		os, arch string
		want     Platform
		fields   []string
	}{
		{"linux", "amd64", Platform{"linux", "amd64"}, nil},
		{"", "x86_64", Platform{"linux", "amd64"}, nil},
		{"Linux", "AARCH64", Platform{"linux", "arm64"}, nil},
		{"linux", "arm64", Platform{"linux", "arm64"}, nil},
		{"linux", "mips", Platform{}, []string{"arch"}},
		{"linux", "", Platform{}, []string{"arch"}},
		{"darwin", "amd64", Platform{}, []string{"os"}},
		{"windows", "386", Platform{}, []string{"os", "arch"}},
	} {
		t.Run(tc.os+"/"+tc.arch, func(t *testing.T) {
			got, err := ParsePlatform(tc.os, tc.arch)
			var fields []string
			for _, f := range errs.FieldsOf(err) {
				fields = append(fields, f.Field)
			}
			if got != tc.want || !slices.Equal(fields, tc.fields) {
				t.Fatalf("ParsePlatform(%q, %q) = %v, %v; want %v with fields %v", tc.os, tc.arch, got, err, tc.want, tc.fields)
			}
			if err != nil && !errors.Is(err, errs.Invalid) {
				t.Fatalf("error %v is not Invalid", err)
			}
		})
	}
}

// FuzzParsePlatform: any query gives a served platform or an Invalid
// error naming os or arch, never a panic or a platform nobody serves.
func FuzzParsePlatform(f *testing.F) {
	for _, s := range [][2]string{{"linux", "amd64"}, {"", "aarch64"}, {"LINUX", "x86_64"}, {"freebsd", "riscv64"}, {"linux\x00", "arm64 "}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, goos, arch string) {
		p, err := ParsePlatform(goos, arch)
		if err != nil {
			fe := errs.FieldsOf(err)
			if !errors.Is(err, errs.Invalid) || len(fe) == 0 {
				t.Fatalf("error %v: want Invalid with fields", err)
			}
			for _, f := range fe {
				if f.Field != "os" && f.Field != "arch" {
					t.Fatalf("field %q", f.Field)
				}
			}
			return
		}
		if p.OS != "linux" || !slices.Contains(Arches, p.Arch) {
			t.Fatalf("ParsePlatform(%q, %q) = %v: not served", goos, arch, p)
		}
	})
}

// TestEmbeddedUnitIsDeploys: what the script installs is the unit and
// sysusers file in deploy/systemd, which TestSystemdUnits verifies and
// scores, byte for byte.
func TestEmbeddedUnitIsDeploys(t *testing.T) {
	for _, name := range []string{UnitFile, SysusersFile} {
		want, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "deploy", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(File(name), want) {
			t.Errorf("systemd/%s differs from deploy/systemd/%s: cp deploy/systemd/%s services/gateway/internal/install/systemd/", name, name, name)
		}
	}
}

func TestFindServesEachPlatformOrSaysWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	host := Platform{"linux", runtime.GOARCH}
	other := Platform{"linux", "arm64"}
	if host.Arch == "arm64" {
		other.Arch = "amd64"
	}
	// vpn-agent: a plain executable of this host (what make build leaves)
	// and a named one of the other architecture.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, filepath.Join(dir, "vpn-agent"))
	if err := os.WriteFile(filepath.Join(dir, "vpn-agent-linux-"+other.Arch), []byte("other"), 0o755); err != nil {
		t.Fatal(err)
	}
	// xray: a plain file that is no executable of any platform.
	if err := os.WriteFile(filepath.Join(dir, "xray"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := NewDir(dir)
	if got, err := d.Find("vpn-agent", host); err != nil || got != filepath.Join(dir, "vpn-agent") {
		t.Fatalf("vpn-agent for %v: %q, %v", host, got, err)
	}
	if got, err := d.Find("vpn-agent", other); err != nil || got != filepath.Join(dir, "vpn-agent-linux-"+other.Arch) {
		t.Fatalf("vpn-agent for %v: %q, %v", other, got, err)
	}
	for _, p := range []Platform{host, other} {
		_, err := d.Find("xray", p)
		if !errors.Is(err, errs.NotFound) || errs.CodeOf(err) != CodeBinaryMissing || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "xray-linux-"+p.Arch) {
			t.Fatalf("xray for %v: %v, want NotFound %s naming %s and the file to put there", p, err, CodeBinaryMissing, dir)
		}
	}
	sums, err := d.Checksums(other)
	if err != nil {
		t.Fatal(err)
	}
	// sha256 of "other"
	if want := "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa  vpn-agent\n"; string(sums) != want {
		t.Fatalf("checksums %q, want %q", sums, want)
	}
	// A file replaced in place is hashed again.
	if err := os.WriteFile(filepath.Join(dir, "vpn-agent-linux-"+other.Arch), []byte("newer!"), 0o755); err != nil {
		t.Fatal(err)
	}
	if again, _ := d.Checksums(other); bytes.Equal(again, sums) {
		t.Fatal("the checksum of a replaced file did not change")
	}
	if _, err := NewDir(t.TempDir()).Checksums(host); errs.CodeOf(err) != CodeBinaryMissing {
		t.Fatalf("checksums of an empty dir: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// render writes the script for base to a file.
func render(t *testing.T, base string) string {
	t.Helper()
	b, err := Script(base, "test")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "agent.sh")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScriptIsPOSIXAndQuotesTheURL: the rendered script parses in sh and
// a URL holding shell syntax stays one literal word. (Shellcheck checks
// the script as the gateway serves it: TestInstallAgentFromTheGateway.)
func TestScriptIsPOSIXAndQuotesTheURL(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	base := "http://gw.example:8080/x'$(touch " + marker + ")'`touch " + marker + "`"
	p := render(t, base)
	if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}
	out, err := exec.Command("sh", p, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), base+"/install/agent.sh") {
		t.Fatalf("--help does not show the gateway URL literally:\n%s", out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the URL was run as a command")
	}
}

// wellFormed is shaped like a join token; the script never gets far
// enough to use it in these tests.
const wellFormed = "vpnjoin1.eyJub2RlIjoiZXUxIn0"

// TestScriptRefusesBadInput runs the script as a host would, with one
// mistake each: it exits 1 with one line naming the option and the rule,
// before fetching anything, and leaves the root it was given empty.
func TestScriptRefusesBadInput(t *testing.T) {
	p := render(t, "http://127.0.0.1:1")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown runtime", []string{"--token", wellFormed, "--runtime", "podman"}, "--runtime 'podman': must be auto, docker, containerd or process"},
		{"unknown arch", []string{"--token", wellFormed, "--arch", "mips"}, "--arch 'mips': must be one of amd64 arm64"},
		{"not a token", []string{"--token", "hello"}, "--token: must be a join token from 'vpn nodes add'"},
		{"token cut with space", []string{"--token", wellFormed + " x"}, "--token: holds characters a join token never has"},
		{"no token, never joined", nil, "--token: is required, this host has not joined a fleet"},
		{"bad name", []string{"--token", wellFormed, "--name", "eu.1"}, "--name 'eu.1': must be 1-128 characters of A-Z a-z 0-9 _ -"},
		{"relative root", []string{"--token", wellFormed, "--root", "tmp/x"}, "--root 'tmp/x': must be an absolute path"},
		{"root without --no-start", []string{"--token", wellFormed}, "needs --no-start"},
		{"env not a setting", []string{"--token", wellFormed, "--env", "PATH=/tmp"}, "--env 'PATH': must be a vpn-agent setting, VPN_*"},
		{"env token", []string{"--token", wellFormed, "--env", "VPN_JOIN_TOKEN=x"}, "--env VPN_JOIN_TOKEN: give the token with --token"},
		{"env without value", []string{"--token", wellFormed, "--env", "VPN_RUNTIME"}, "--env 'VPN_RUNTIME': must be KEY=VALUE"},
		{"xray twice", []string{"--token", wellFormed, "--no-xray", "--xray-bin", "/usr/bin/xray"}, "--xray-bin and --no-xray: give one of them"},
		{"unknown option", []string{"--token", wellFormed, "--colour", "red"}, "unknown option --colour"},
		{"option without value", []string{"--token"}, "--token: needs a value"},
		{"bad gateway", []string{"--token", wellFormed, "--gateway", "ftp://x"}, "--gateway 'ftp://x': must be an http(s) URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			args := append([]string{p}, tc.args...)
			if tc.name != "relative root" {
				args = append(args, "--root", root)
			}
			if tc.name != "root without --no-start" {
				args = append(args, "--no-start")
			}
			runRefused(t, exec.Command("sh", args...), tc.want)
			assertEmpty(t, root)
		})
	}
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		t.Run("no systemd", func(t *testing.T) {
			runRefused(t, exec.Command("sh", p, "--token", wellFormed), "systemd is not running on this host: install with --no-start")
		})
	}
	t.Run("not root", func(t *testing.T) {
		root := t.TempDir()
		// As `curl ... | sh -s -- ...` runs it: the script on stdin.
		args := []string{"sh", "-s", "--", "--token", wellFormed, "--root", root, "--no-start"}
		if os.Geteuid() == 0 {
			setpriv, err := exec.LookPath("setpriv") // util-linux
			if err != nil {
				t.Fatalf("running as root, the test needs setpriv to drop to another user: %v", err)
			}
			args = append([]string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
		}
		script, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer script.Close()
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = script
		runRefused(t, cmd, "must run as root")
		assertEmpty(t, root)
	})
}

// runRefused runs cmd and wants exit status 1 and want in its one line
// on stderr.
func runRefused(t *testing.T, cmd *exec.Cmd, want string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "VPN_JOIN_TOKEN=")
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	line := strings.TrimSpace(stderr.String())
	if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "vpn-agent install: ") || !strings.Contains(line, want) {
		t.Fatalf("stderr %q, want one line with %q", line, want)
	}
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Fatalf("%s holds %v after a refusal: want nothing installed", dir, ents)
	}
}

// TestScriptDryRunChangesNothing: --dry-run, even as another user, says
// each step and touches nothing.
func TestScriptDryRunChangesNothing(t *testing.T) {
	p := render(t, "https://vpn.example.com")
	root := t.TempDir()
	out, err := exec.Command("sh", p, "--dry-run", "--token", wellFormed, "--root", root, "--no-start", "--arch", "arm64",
		"--runtime", "docker", "--env", "VPN_PUBLIC_ADDR=203.0.113.7").CombinedOutput()
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"fetch vpn-agent xray from https://vpn.example.com/install/ and check them against https://vpn.example.com/install/checksums?os=linux&arch=arm64",
		"join the fleet with the token",
		"install " + root + "/usr/local/bin/vpn-agent",
		"install " + root + "/etc/systemd/system/vpn-agent.service",
		"write " + root + "/etc/vpnfleet/vpn-agent.env (0600) with VPN_RUNTIME=docker",
		"VPN_PUBLIC_ADDR",
		"leave vpn-agent stopped",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("dry run does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), wellFormed) {
		t.Errorf("dry run prints the token:\n%s", out)
	}
	assertEmpty(t, root)
}
