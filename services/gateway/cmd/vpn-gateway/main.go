// Command vpn-gateway serves the HTTP API in front of the services on NATS.
package main

import (
	"context"
	"errors"
	"io"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct {
	Svc     svc.Config
	Gateway gateway.Config
}

func (c *cfg) Validate() error { return errors.Join(c.Svc.Validate(), c.Gateway.Validate()) }

func main() { lifecycle.Main("vpn-gateway", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := cfg{Svc: svc.Defaults("127.0.0.1:9101"), Gateway: gateway.Defaults()}
	if ok, err := svc.Healthcheck(ctx, "vpn-gateway", &c, func() string { return c.Svc.OpsAddr }, args, getenv, stdout); ok {
		return err
	}
	if err := config.Load("vpn-gateway", &c, args, getenv, stdout); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-gateway", version.Version, c.Svc, stdout, func(ctx context.Context, env svc.Env) error {
		return gateway.Run(ctx, c.Gateway, env)
	})
}
