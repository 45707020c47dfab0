package app

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// DefaultTokenFile is where `make run` leaves the first admin token.
var DefaultTokenFile = filepath.Join("data", "admin.token")

func (a *app) initCmd() *cobra.Command {
	var tokenFile, userName, serverName string
	var d deployFlags
	var yes, noQR bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "init",
		Short: "First run: log in, deploy a VLESS+Reality server on the local node, create a user, show its QR code",
		Long: `init sets up a fresh vpnd in one go. Run 'make run' first, then 'vpn init'
from the same directory: it logs in with the admin token vpnd wrote to
./data/admin.token, deploys a VLESS+Reality server on the local node, creates
a first user and prints the user's link and QR code. Every step is skipped
when already done, so init can be run again. Interactive on a terminal;
--yes (or no terminal) takes the flags and defaults without asking.`,
		Example: "  vpn init\n  vpn init --yes --user alice --port 8443 --dest www.microsoft.com:443",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ask := a.env.Interactive && !yes
			in := bufio.NewReader(a.env.Stdin)
			s, _, err := a.settings()
			if err != nil {
				return err
			}
			tok := s.Token
			if tok == "" || tokenFile != "" {
				tf := tokenFile
				if tf == "" {
					tf = DefaultTokenFile
				}
				if b, err := os.ReadFile(tf); err == nil {
					tok = strings.TrimSpace(string(b))
				} else if tokenFile != "" {
					return fmt.Errorf("reading the token: %w", err)
				}
			}
			if tok == "" && ask {
				if tok, err = a.prompt(in, "API token (vpnd wrote one to <data dir>/admin.token)", ""); err != nil {
					return err
				}
			}
			if tok == "" {
				return fmt.Errorf("no API token\nhint: start vpnd with `make run` (it writes ./data/admin.token), then run `vpn init` in the same directory, or pass --token-file <data dir>/admin.token")
			}
			if tok != s.Token {
				if err := a.login(cmd, tok); err != nil {
					return err
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			c.Token = tok

			if ask {
				if userName, err = a.prompt(in, "first user's name", userName); err != nil {
					return err
				}
				port, err := a.prompt(in, "server port", strconv.Itoa(d.port))
				if err != nil {
					return err
				}
				if d.port, err = strconv.Atoi(port); err != nil {
					return usagef("port %q is not a number", port)
				}
				if d.dest, err = a.prompt(in, "REALITY dest (a TLS 1.3 site to borrow)", d.dest); err != nil {
					return err
				}
			}
			d.protocol = string(user.VLESSReality)

			nodeID, err := a.pickNode(cmd, d.node)
			if err != nil {
				return err
			}
			srv, err := a.ensureServer(cmd, c, serverName, nodeID, d)
			if err != nil {
				return err
			}
			u, err := a.ensureUser(cmd, c, userName)
			if err != nil {
				return err
			}

			a.info("waiting up to %s for node %s to apply server %s ...", wait, nodeID, srv.Name)
			err = client.Wait(cmd.Context(), wait, 500*time.Millisecond, func() (bool, error) {
				if err := c.Get(cmd.Context(), serverPath(srv.ID), nil, &srv); err != nil {
					return false, err
				}
				if srv.Status.State == server.StateFailed {
					return false, fmt.Errorf("node %s could not apply server %s: %s\nhint: see `vpn servers logs %s`, fix it with `vpn servers remove %s` and run `vpn init` again", nodeID, srv.Name, srv.Status.Reason, srv.Name, srv.Name)
				}
				return srv.Status.State == server.StateApplied, nil
			})
			if err != nil {
				if cmd.Context().Err() == nil && errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("server %s is still %s on node %s after %s\nhint: the node's agent applies it; check `vpn servers show %s` and `vpn nodes list`, then `vpn users link %s --qr`", srv.Name, stateText(srv), nodeID, wait, srv.Name, u.Name)
				}
				return err
			}
			var lr user.LinksResponse
			if err := c.Get(cmd.Context(), userPath(u.Name, "links"), nil, &lr); err != nil {
				return err
			}
			for _, l := range lr.Links {
				if l.Server != srv.ID {
					continue
				}
				a.done("\nuser %s on server %s (%s:%d):\n%s", u.Name, srv.Name, srv.Status.PublicHost, d.port, l.URL)
				if noQR {
					return nil
				}
				text, err := c.Bytes(cmd.Context(), client.Request{Method: http.MethodGet, Path: userPath(u.Name, "qr"),
					Query: url.Values{"server": {l.Server}, "protocol": {string(l.Protocol)}, "format": {"text"}}})
				if err != nil {
					return err
				}
				fmt.Fprint(a.env.Stdout, output.EscapeLines(string(text)))
				a.info("scan it with a VLESS+Reality client (v2rayNG, Hiddify, Streisand); more users: `vpn users create NAME`")
				return nil
			}
			return fmt.Errorf("server %s is applied but user %s has no link on it\nhint: `vpn users link %s` says why", srv.Name, u.Name, u.Name)
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokenFile, "token-file", "", "read the admin token from this file (default: ./"+DefaultTokenFile+" when no token is configured)")
	f.StringVar(&userName, "user", "alice", "name of the first user")
	f.StringVar(&serverName, "server-name", "reality", "name of the server")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask; take flags and defaults")
	f.BoolVar(&noQR, "no-qr", false, "print the link without a QR code")
	f.DurationVar(&wait, "wait", 60*time.Second, "how long to wait for the node to apply the server")
	d.register(cmd)
	_ = f.MarkHidden("protocol")
	_ = f.MarkHidden("method")
	return cmd
}

// ensureServer returns the node's server named name, deploying it first
// when there is none.
func (a *app) ensureServer(cmd *cobra.Command, c *client.Client, name, nodeID string, d deployFlags) (server.Server, error) {
	var list server.ListResponse
	if err := c.Get(cmd.Context(), "/api/v1/servers", url.Values{"node": {nodeID}}, &list); err != nil {
		return server.Server{}, err
	}
	for _, s := range list.Servers {
		if s.Name == name {
			a.info("server %s already on node %s", name, nodeID)
			return s, nil
		}
	}
	var s server.Server
	if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/servers", Body: d.request(name, nodeID)}, &s); err != nil {
		return s, err
	}
	a.info("deployed server %s (VLESS+Reality on port %d) on node %s", name, d.port, nodeID)
	return s, nil
}

// ensureUser returns the user named name, creating it first when missing.
func (a *app) ensureUser(cmd *cobra.Command, c *client.Client, name string) (user.User, error) {
	var u user.User
	err := c.Get(cmd.Context(), userPath(name), nil, &u)
	var ae *client.APIError
	if err == nil {
		a.info("user %s already exists", name)
		return u, nil
	}
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		return u, err
	}
	req := user.CreateRequest{Name: name, IdempotencyKey: "vpn-init-" + name}
	if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/users", Body: req}, &u); err != nil {
		return u, err
	}
	a.info("created user %s", name)
	return u, nil
}
