package agent

import (
	"context"
	"log/slog"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// openContainerd is replaced when the containerd runtime lands.
func openContainerd(ctx context.Context, cfg Config, node, dataDir string, log *slog.Logger) (runtime.Runtime, error) {
	return nil, errs.New(errs.Unavailable, "containerd runtime is not built into this agent yet")
}
