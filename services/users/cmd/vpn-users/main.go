// Command vpn-users runs the user registry on its own (vpnd runs the same
// core in-process).
package main

import (
	"context"
	"io"

	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct {
	Svc   svc.Config
	Users users.Config
}

func (c *cfg) Validate() error {
	var fe []errs.FieldError
	for _, err := range []error{c.Svc.Validate(), c.Users.Validate()} {
		fe = append(fe, errs.FieldsOf(err)...)
	}
	return errs.Fields(fe...)
}

func main() { lifecycle.Main("vpn-users", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := cfg{Svc: svc.Defaults("127.0.0.1:9102"), Users: users.Defaults()}
	if ok, err := svc.Healthcheck(ctx, "vpn-users", &c, func() string { return c.Svc.OpsAddr }, args, getenv, stdout); ok {
		return err
	}
	if err := config.Load("vpn-users", &c, args, getenv, stdout); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-users", version.Version, c.Svc, stdout, func(ctx context.Context, env svc.Env) error {
		return users.Run(ctx, c.Users, env)
	})
}
