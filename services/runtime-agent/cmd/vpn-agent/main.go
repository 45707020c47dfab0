// Command vpn-agent runs on every VPN host: it dials out to NATS, drives
// the host's container runtime (or supervises processes) and reports the
// node's health, events and stats.
package main

import (
	"context"
	"io"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct {
	Svc     svc.Config
	Agent   agent.Config
	DataDir string `flag:"data-dir" env:"VPN_DATA_DIR" help:"directory for the node id, the outbox and process logs"`
}

func (c *cfg) Validate() error {
	if c.DataDir == "" {
		return errs.Field("data_dir", "must be set")
	}
	if err := c.Svc.Validate(); err != nil {
		return err
	}
	return c.Agent.Validate()
}

func main() { lifecycle.Main("vpn-agent", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := cfg{Svc: svc.Defaults("127.0.0.1:9104"), Agent: agent.DefaultConfig(), DataDir: "/var/lib/vpn-agent"}
	// Agents hold per-node credentials that may not create streams: the
	// control plane provisions.
	c.Svc.Provision = false
	if err := config.Load("vpn-agent", &c, args, getenv, stdout); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-agent", version.Version, c.Svc, stdout, func(ctx context.Context, env svc.Env) error {
		env.DataDir = c.DataDir
		return agent.Run(ctx, c.Agent, env)
	})
}
