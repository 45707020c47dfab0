// Command vpn-cluster prepares a NATS cluster for the fleet: `vpn-cluster
// init --dir DIR` writes the operator and accounts, TLS, one nats-server
// configuration per node, the services' credentials and the users
// service's signer directory (see services/vpnd/internal/cluster). It runs
// offline, once, where the operator keeps the keys; deploy/cluster runs it.
package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/cluster"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
)

func main() { lifecycle.Main("vpn-cluster", run) }

const usage = "usage: vpn-cluster init --dir DIR [--nodes 3] [--hosts nats-1,nats-2,nats-3] [flags] (vpn-cluster init -h lists them)"

func run(_ context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "init" {
		return errs.New(errs.Invalid, "%s", usage)
	}
	o := cluster.Defaults()
	if err := config.Load("vpn-cluster init", &o, args[1:], getenv, stdout); err != nil {
		return err
	}
	res, err := cluster.Init(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cluster %s written to %s\n", o.Name, o.Dir)
	fmt.Fprintf(stdout, "  nats-server configs: %s\n", strings.Join(res.Configs, " "))
	fmt.Fprintf(stdout, "  --nats-url %s\n", strings.Join(res.URLs, ","))
	fmt.Fprintf(stdout, "  account %s\n", res.Account)
	return nil
}
