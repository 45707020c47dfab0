package xraytest

import (
	"bytes"
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
	xrayMainPkg = "github.com/xtls/xray-core/main"
	agentModule = "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	// BinEnv names the environment variable that points tests at a
	// prebuilt Xray binary (make xray exports it).
	BinEnv = "VPN_XRAY_BIN"
)

var (
	buildOnce sync.Once
	builtPath string
	errBuild  error
)

// Binary returns the path of the Xray binary to test with. When VPN_XRAY_BIN
// is set it must name an existing file (the test fails otherwise). When it is
// not, Binary builds Xray from the version pinned in the agent's go.mod,
// exactly as `make xray` does (CGO_ENABLED=0 go build -trimpath), once per
// test binary, into a cache shared by all test binaries and runs
// (os.UserCacheDir()/vpnfleet), so `go test` needs nothing installed by hand
// and never skips.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinEnv); p != "" {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s=%s: %v", BinEnv, p, err)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			t.Fatalf("%s=%s: not an executable file", BinEnv, p)
		}
		return p
	}
	buildOnce.Do(func() { builtPath, errBuild = buildCached() })
	if errBuild != nil {
		t.Fatalf("building xray: %v", errBuild)
	}
	return builtPath
}

// buildCached builds Xray into the cache unless it is already there. A file
// lock keeps concurrent test binaries from building at once, and the build
// goes to a temporary name renamed into place, so a reader never sees half
// a binary.
func buildCached() (string, error) {
	version, err := xrayVersion()
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
	name := fmt.Sprintf("xray-%s-%s-%s-%s", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
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

	goBin, err := goCommand()
	if err != nil {
		return "", err
	}
	modDir, err := agentModuleDir(goBin)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", tmpPath, xrayMainPkg)
	cmd.Dir = modDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("running go build %s in %s: %w\n%s", xrayMainPkg, modDir, err, out)
	}
	if err := os.Chmod(tmpPath, 0o755); err != nil {
		return "", fmt.Errorf("making xray executable: %w", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return "", fmt.Errorf("moving xray into the cache: %w", err)
	}
	return path, nil
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
