// Package install is what a new VPN host needs to join the fleet, as the
// gateway serves it: the installer script (agent.sh, rendered with the
// gateway's URL), the agent and Xray binaries of each platform and their
// SHA-256, and the systemd unit and sysusers file the script installs.
// Those two are copies of deploy/systemd embedded here (a test keeps them
// byte for byte equal), so a host gets exactly the unit that is tested.
package install

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

//go:embed agent.sh.tmpl systemd/vpn-agent.service systemd/vpnfleet.sysusers
var files embed.FS

// Files the script installs, by name under systemd/.
const (
	UnitFile     = "vpn-agent.service"
	SysusersFile = "vpnfleet.sysusers"
)

// Binaries are the executables a host downloads, in the order the script
// fetches them.
var Binaries = []string{"vpn-agent", "xray"}

// Arches are the architectures served (GOARCH names).
var Arches = []string{"amd64", "arm64"}

// CodeBinaryMissing is the problem code of a platform whose binary is not
// in the binaries directory.
const CodeBinaryMissing = "agent_binary_missing"

// Platform is an operating system and architecture, as Go names them.
type Platform struct {
	OS   string
	Arch string
}

func (p Platform) String() string { return p.OS + "/" + p.Arch }

// archAliases maps what `uname -m` prints, and Go's names, to Go's names.
var archAliases = map[string]string{
	"amd64": "amd64", "x86_64": "amd64",
	"arm64": "arm64", "aarch64": "arm64",
}

// ParsePlatform reads the os and arch query parameters: os is linux (the
// default), arch one of Arches or what `uname -m` prints for it.
func ParsePlatform(goos, arch string) (Platform, error) {
	var fe []errs.FieldError
	p := Platform{OS: strings.ToLower(goos), Arch: archAliases[strings.ToLower(arch)]}
	if p.OS == "" {
		p.OS = "linux"
	}
	if p.OS != "linux" {
		fe = append(fe, errs.FieldError{Field: "os", Rule: "must be linux: the agent runs on Linux only"})
	}
	if p.Arch == "" {
		fe = append(fe, errs.FieldError{Field: "arch", Rule: "must be amd64 or arm64 (x86_64 and aarch64, as uname -m prints them, are taken too)"})
	}
	if len(fe) > 0 {
		return Platform{}, errs.Fields(fe...)
	}
	return p, nil
}

// Dir is the directory the binaries are served from: for each binary and
// platform, <name>-<os>-<arch> (what `make agent-binaries` builds), else
// <name> when it is an executable of that platform (what `make build`
// and `make xray` leave in bin/).
type Dir struct {
	path string

	mu   sync.Mutex
	sums map[string]sum
}

type sum struct {
	size    int64
	modTime time.Time
	hex     string
}

// NewDir serves the binaries in path; "" is the directory of the running
// executable (bin/ after `make build`, /usr/local/bin when installed).
func NewDir(path string) *Dir {
	if path == "" {
		if exe, err := os.Executable(); err == nil {
			if real, err := filepath.EvalSymlinks(exe); err == nil {
				exe = real
			}
			path = filepath.Dir(exe)
		}
	}
	return &Dir{path: path, sums: map[string]sum{}}
}

// Path is the directory served.
func (d *Dir) Path() string { return d.path }

// Find returns the file of binary name for p, or a NotFound error with
// code CodeBinaryMissing saying what to put where.
func (d *Dir) Find(name string, p Platform) (string, error) {
	exact := filepath.Join(d.path, name+"-"+p.OS+"-"+p.Arch)
	if st, err := os.Stat(exact); err == nil && st.Mode().IsRegular() {
		return exact, nil
	}
	plain := filepath.Join(d.path, name)
	if got, err := platformOf(plain); err == nil && got == p {
		return plain, nil
	}
	return "", errs.WithCode(errs.New(errs.NotFound,
		"no %s for %s in %s: put %s there (or %s built for %s), or point --agent-binaries at a directory holding it",
		name, p, d.path, filepath.Base(exact), name, p), CodeBinaryMissing)
}

// platformOf reads the platform an ELF executable was built for.
func platformOf(path string) (Platform, error) {
	f, err := elf.Open(path)
	if err != nil {
		return Platform{}, err
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return Platform{}, fmt.Errorf("%s is not an executable", path)
	}
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		return Platform{}, fmt.Errorf("%s is not a Linux executable", path)
	}
	switch f.Machine {
	case elf.EM_X86_64:
		return Platform{OS: "linux", Arch: "amd64"}, nil
	case elf.EM_AARCH64:
		return Platform{OS: "linux", Arch: "arm64"}, nil
	}
	return Platform{}, fmt.Errorf("%s is for machine %s", path, f.Machine)
}

// SHA256 is the hex SHA-256 of a file Find returned, computed once per
// size and modification time (an upgraded file is hashed again).
func (d *Dir) SHA256(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", errs.Wrap(errs.NotFound, err, "reading %s", path)
	}
	d.mu.Lock()
	s, ok := d.sums[path]
	d.mu.Unlock()
	if ok && s.size == st.Size() && s.modTime.Equal(st.ModTime()) {
		return s.hex, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", errs.Wrap(errs.NotFound, err, "reading %s", path)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", errs.Wrap(errs.Internal, err, "reading %s", path)
	}
	s = sum{size: st.Size(), modTime: st.ModTime(), hex: hex.EncodeToString(h.Sum(nil))}
	d.mu.Lock()
	d.sums[path] = s
	d.mu.Unlock()
	return s.hex, nil
}

// Checksums is the sha256sum(1) listing of every binary found for p
// ("<hex>  <name>" lines, in the order of Binaries); the first binary's
// NotFound error when none is.
func (d *Dir) Checksums(p Platform) ([]byte, error) {
	var b bytes.Buffer
	var first error
	for _, name := range Binaries {
		path, err := d.Find(name, p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		h, err := d.SHA256(path)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "%s  %s\n", h, name)
	}
	if b.Len() == 0 {
		return nil, first
	}
	return b.Bytes(), nil
}

// File is an embedded file the script installs (UnitFile, SysusersFile).
func File(name string) []byte {
	b, err := files.ReadFile("systemd/" + name)
	if err != nil {
		panic("install: no embedded " + name)
	}
	return b
}

var script = template.Must(template.New("agent.sh.tmpl").Funcs(template.FuncMap{"quote": Quote}).ParseFS(files, "agent.sh.tmpl"))

// Heredoc markers of the embedded files in the script; Script refuses a
// file holding its marker as a line.
const (
	unitMarker     = "VPNFLEET_UNIT_END"
	sysusersMarker = "VPNFLEET_SYSUSERS_END"
)

// Script renders the installer for a gateway reachable at base (scheme and
// host, no trailing slash). It holds no secret: the join token is the
// operator's to pass.
func Script(base, version string) ([]byte, error) {
	unit, sysusers := string(File(UnitFile)), string(File(SysusersFile))
	for _, f := range []struct{ text, marker string }{{unit, unitMarker}, {sysusers, sysusersMarker}} {
		if strings.Contains("\n"+f.text, "\n"+f.marker+"\n") || !strings.HasSuffix(f.text, "\n") {
			return nil, errs.New(errs.Internal, "an embedded file holds its heredoc marker %s or lacks a final newline", f.marker)
		}
	}
	var b bytes.Buffer
	err := script.Execute(&b, map[string]string{
		"Base": base, "Version": version, "Unit": unit, "Sysusers": sysusers,
		"UnitMarker": unitMarker, "SysusersMarker": sysusersMarker,
		"Arches": strings.Join(Arches, " "),
	})
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "rendering the install script")
	}
	return b.Bytes(), nil
}

// Quote quotes s for a POSIX shell as one word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
