// Command vpn-health runs the health and stats collector.
package main

import (
	"context"
	"io"

	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct{ Svc svc.Config }

func (c *cfg) Validate() error { return c.Svc.Validate() }

func main() { lifecycle.Main("vpn-health", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := cfg{Svc: svc.Defaults("127.0.0.1:9103")}
	if err := config.Load("vpn-health", &c, args, getenv, stdout); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-health", version.Version, c.Svc, stdout, health.Run)
}
