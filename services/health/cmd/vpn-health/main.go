// Command vpn-health runs the health service: node health, stats history,
// alert rules, notifiers and the Prometheus view of the fleet.
package main

import (
	"context"
	"errors"
	"io"

	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct {
	Svc    svc.Config
	Health health.Config
}

func (c *cfg) Validate() error { return errors.Join(c.Svc.Validate(), c.Health.Validate()) }

func main() { lifecycle.Main("vpn-health", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := cfg{Svc: svc.Defaults("127.0.0.1:9103"), Health: health.Defaults()}
	if ok, err := svc.Healthcheck(ctx, "vpn-health", &c, func() string { return c.Svc.OpsAddr }, args, getenv, stdout); ok {
		return err
	}
	if err := config.Load("vpn-health", &c, args, getenv, stdout); err != nil {
		return err
	}
	// Refuse a bad rules file before dialing anything.
	if _, err := health.LoadRules(c.Health.RulesFile); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-health", version.Version, c.Svc, stdout, func(ctx context.Context, env svc.Env) error {
		return health.Run(ctx, c.Health, env)
	})
}
