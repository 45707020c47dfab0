package xray

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime/debug"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/sessionpb"
)

// Version returns the Xray-core module version linked into this binary,
// which is the version the module pins (and `make xray` builds), e.g.
// "v1.260327.0"; "" when build information is missing. The agent's default
// Xray image is tagged with it.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/xtls/xray-core" {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version
		}
	}
	return ""
}

// HasSessionExtension tells whether the Xray executable bin is vpn-xray,
// which can end a user's open sessions and counts traffic while it flows,
// by what `bin version` prints. It fails when bin does not run.
func HasSessionExtension(ctx context.Context, bin string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		return false, fmt.Errorf("running %s version: %w", bin, err)
	}
	return bytes.Contains(out, []byte(sessionpb.VersionMarker)), nil
}
