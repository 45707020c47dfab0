package xraytest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

const (
	xrayModule  = "github.com/xtls/xray-core"
	agentModule = "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	// BinEnv names the environment variable that points tests at a
	// prebuilt vpn-xray (make test sets it to bin/xray).
	BinEnv = "VPN_XRAY_BIN"
	// StockBinEnv names the environment variable that points tests at a
	// prebuilt stock Xray (make test sets it to bin/xray-stock).
	StockBinEnv = "VPN_XRAY_STOCK_BIN"
)

// The two builds: vpn-xray, the pinned Xray-core with the session
// extension (what the product runs), and the stock Xray-core main.
var (
	extended = build{env: BinEnv, pkg: agentModule + "/cmd/vpn-xray", name: "vpn-xray",
		sources: []string{"cmd/vpn-xray", "internal/xray/sessions", "internal/xray/sessionpb"}}
	stock = build{env: StockBinEnv, pkg: xrayModule + "/main", name: "xray"}
)

type build struct {
	env     string
	pkg     string
	name    string
	sources []string // directories of this module the build depends on

	once sync.Once
	path string
	err  error
}

// Binary returns the path of the Xray the product runs, vpn-xray (the
// pinned Xray-core with the session extension, cmd/vpn-xray). When
// VPN_XRAY_BIN is set it must name an existing executable (the test fails
// otherwise). When it is not, Binary builds it exactly as `make xray` does
// (CGO_ENABLED=0 go build -trimpath), once per test binary, into a cache
// shared by all test binaries and runs (os.UserCacheDir()/vpnfleet, keyed
// by the versions and the extension's sources), so `go test` needs nothing
// installed by hand and never skips.
func Binary(t testing.TB) string {
	t.Helper()
	return extended.get(t)
}

// StockBinary is Binary for the stock Xray-core of the pinned version,
// without the session extension (VPN_XRAY_STOCK_BIN, or built like `make
// xray-stock`).
func StockBinary(t testing.TB) string {
	t.Helper()
	return stock.get(t)
}

func (b *build) get(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(b.env); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s=%s: %v", b.env, p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("%s=%s: not an executable file", b.env, p)
		}
		return p
	}
	b.once.Do(func() { b.path, b.err = b.buildCached() })
	if b.err != nil {
		t.Fatalf("building %s: %v", b.name, b.err)
	}
	return b.path
}

// buildCached builds the binary into the cache unless it is already there.
// A file lock keeps concurrent test binaries from building at once, and
// the build goes to a temporary name renamed into place, so a reader never
// sees half a binary.
func (b *build) buildCached() (string, error) {
	version, err := xrayVersion()
	if err != nil {
		return "", err
	}
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	modDir, err := agentModuleDir(goBin)
	if err != nil {
		return "", err
	}
	digest, err := sourceDigest(modDir, b.sources)
	if err != nil {
		return "", err
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "vpnfleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating cache dir: %w", err)
	}
	name := fmt.Sprintf("%s-%s-%s-%s-%s%s", b.name, version, runtime.Version(), runtime.GOOS, runtime.GOARCH, digest)
	path := filepath.Join(dir, name)
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return "", fmt.Errorf("locking xray cache: %w", err)
	}
	defer unlock()
	if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
		return path, nil
	}
	tmp, err := os.CreateTemp(dir, name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("creating temporary binary: %w", err)
	}
	tmpPath := tmp.Name()
	_ = tmp.Close()
	defer os.Remove(tmpPath)

	cmd := exec.Command(goBin, "build", "-trimpath", "-o", tmpPath, b.pkg)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("running go build %s in %s: %w\n%s", b.pkg, modDir, err, out)
	}
	if err := os.Chmod(tmpPath, 0o755); err != nil {
		return "", fmt.Errorf("making xray executable: %w", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return "", fmt.Errorf("moving xray into the cache: %w", err)
	}
	return path, nil
}

// sourceDigest hashes the files of the module directories dirs ("" when
// there are none), so a cached build is rebuilt when they change.
func sourceDigest(modDir string, dirs []string) (string, error) {
	if len(dirs) == 0 {
		return "", nil
	}
	h := sha256.New()
	for _, d := range dirs {
		entries, err := os.ReadDir(filepath.Join(modDir, d))
		if err != nil {
			return "", fmt.Errorf("hashing the sources of the xray build: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(modDir, d, e.Name()))
			if err != nil {
				return "", fmt.Errorf("hashing the sources of the xray build: %w", err)
			}
			fmt.Fprintf(h, "%s/%s %d\n", d, e.Name(), len(b))
			h.Write(b)
		}
	}
	return "-" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

// xrayVersion is the Xray-core version linked into this test binary, which
// is the one the module pins.
func xrayVersion() (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == xrayModule {
				if d.Replace != nil {
					d = d.Replace
				}
				if d.Version != "" {
					return d.Version, nil
				}
			}
		}
	}
	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Version}}", xrayModule).Output()
	if err != nil {
		return "", fmt.Errorf("finding the pinned xray-core version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// agentModuleDir finds the runtime-agent module, whose go.mod pins Xray and
// declares its main package as a tool, from the current directory (this
// module or any module of the workspace).
func agentModuleDir(goBin string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", agentModule)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding module %s: %w: %s", agentModule, err, stderr.String())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("finding module " + agentModule + ": empty directory")
	}
	return dir, nil
}

// goCommand finds the go command in PATH, where `go test` puts its own
// GOROOT/bin ahead of everything else, so the Xray build uses the toolchain
// that built the test. (runtime.GOROOT, the old fallback, is deprecated: the
// root a binary was built with means nothing on another machine.)
func goCommand() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("finding the go command: %w (run the tests with go test, or set %s)", err, BinEnv)
	}
	return p, nil
}
