package svc

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/probe"
)

// HealthcheckCmd is the subcommand every binary with an ops listener
// answers: `vpnd healthcheck` exits 0 when the running process's /readyz
// answers 200, 1 otherwise. Images declare it as their HEALTHCHECK.
const HealthcheckCmd = "healthcheck"

// healthcheckTimeout bounds one probe, below Docker's default 30s.
const healthcheckTimeout = 5 * time.Second

// Healthcheck runs the healthcheck subcommand when args start with it and
// reports whether they did. It loads cfg from the remaining flags, the
// environment and the config file, as the running process loaded its own,
// so it asks the ops listener that process opened (opsAddr reads it from
// cfg once loaded). It prints one line on success; a failure is the error.
func Healthcheck(ctx context.Context, name string, cfg any, opsAddr func() string, args []string, getenv func(string) string, stdout io.Writer) (bool, error) {
	if len(args) == 0 || args[0] != HealthcheckCmd {
		return false, nil
	}
	if err := config.Load(name+" "+HealthcheckCmd, cfg, args[1:], getenv, stdout); err != nil {
		return true, err
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	addr := opsAddr()
	if err := probe.CheckReady(ctx, addr); err != nil {
		return true, err
	}
	fmt.Fprintf(stdout, "ready (ops listener %s)\n", addr)
	return true, nil
}
