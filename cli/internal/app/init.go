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
	"slices"
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
	var ssPort, socksPort, httpPort int
	cmd := &cobra.Command{
		Use:   "init",
		Short: "First run: log in, deploy a server for every protocol on the local node, create a user, show its links and QR code",
		Long: `init sets up a fresh vpnd in one go. Run 'make run' first, then 'vpn init'
from the same directory: it logs in with the admin token vpnd wrote to
./data/admin.token, deploys a server on the local node with an inbound for
every protocol a new user gets (VLESS+Reality on --port, Shadowsocks-2022 on
--ss-port, SOCKS5 on --socks-port, HTTP on --http-port), creates a first user
and prints the user's links and a QR code. Every step is skipped when already
done (a server init deployed before gets the inbounds it lacks), so init can
be run again. Interactive on a terminal; --yes (or no terminal) takes the
flags and defaults without asking.`,
		Example: "  vpn init\n  vpn init --yes --user alice --port 8443 --dest www.microsoft.com:443\n  vpn init --yes --dest 203.0.113.10:443 --sni www.example.com --http-port 3129",
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
			if err := d.check(); err != nil {
				return err
			}
			ports := map[user.Protocol]int{user.VLESSReality: d.port, user.Shadowsocks2022: ssPort, user.SOCKS5: socksPort, user.HTTP: httpPort}
			if err := distinctPorts(ports); err != nil {
				return err
			}

			nodeID, err := a.pickNode(cmd, d.node)
			if err != nil {
				return err
			}
			srv, err := a.ensureServer(cmd, c, serverName, nodeID, initInbounds(d, ports))
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
			var mine []user.Link
			for _, l := range lr.Links {
				if l.Server == srv.ID {
					mine = append(mine, l)
				}
			}
			if len(mine) == 0 {
				return fmt.Errorf("server %s is applied but user %s has no link on it\nhint: `vpn users link %s` says why", srv.Name, u.Name, u.Name)
			}
			a.done("\nuser %s on server %s (%s):", u.Name, srv.Name, srv.Status.PublicHost)
			for _, l := range mine {
				a.done("%s", l.URL)
			}
			qr := mine[0]
			if noQR || qr.Protocol != user.VLESSReality {
				return nil
			}
			text, err := c.Bytes(cmd.Context(), client.Request{Method: http.MethodGet, Path: userPath(u.Name, "qr"),
				Query: url.Values{"server": {qr.Server}, "protocol": {string(qr.Protocol)}, "format": {"text"}}})
			if err != nil {
				return err
			}
			fmt.Fprint(a.env.Stdout, output.EscapeLines(string(text)))
			a.info("scan it with a VLESS+Reality client (v2rayNG, Hiddify, Streisand); `vpn users link %s --protocol ...` shows the others; more users: `vpn users create NAME`", u.Name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&tokenFile, "token-file", "", "read the admin token from this file (default: ./"+DefaultTokenFile+" when no token is configured)")
	f.StringVar(&userName, "user", "alice", "name of the first user")
	f.StringVar(&serverName, "server-name", "reality", "name of the server")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask; take flags and defaults")
	f.BoolVar(&noQR, "no-qr", false, "print the link without a QR code")
	f.DurationVar(&wait, "wait", 60*time.Second, "how long to wait for the node to apply the server")
	f.IntVar(&ssPort, "ss-port", 8388, "port of the Shadowsocks-2022 inbound")
	f.IntVar(&socksPort, "socks-port", 1080, "port of the SOCKS5 inbound")
	f.IntVar(&httpPort, "http-port", 3128, "port of the HTTP proxy inbound")
	d.register(cmd)
	_ = f.MarkHidden("protocol")
	_ = f.MarkHidden("method")
	return cmd
}

// initInbounds are the inbounds init deploys: one for every protocol a
// new user gets (user.Protocols), so each of a user's links works, on the
// ports given.
func initInbounds(d deployFlags, ports map[user.Protocol]int) []server.InboundRequest {
	out := make([]server.InboundRequest, 0, len(user.Protocols))
	for _, p := range user.Protocols {
		in := server.InboundRequest{Protocol: p, Port: ports[p]}
		switch p {
		case user.VLESSReality:
			in.Dest, in.ServerNames = d.dest, d.sni
		case user.Shadowsocks2022:
			in.Method = d.method
		}
		out = append(out, in)
	}
	return out
}

// distinctPorts refuses two protocols on one port.
func distinctPorts(ports map[user.Protocol]int) error {
	flags := map[user.Protocol]string{user.VLESSReality: "--port", user.Shadowsocks2022: "--ss-port", user.SOCKS5: "--socks-port", user.HTTP: "--http-port"}
	seen := map[int]user.Protocol{}
	for _, p := range user.Protocols {
		if q, ok := seen[ports[p]]; ok {
			return usagef("%s and %s are both %d: every protocol needs its own port", flags[q], flags[p], ports[p])
		}
		seen[ports[p]] = p
	}
	return nil
}

// describeInbounds says what inbounds serve: "vless-reality on port 8443,
// socks5 on port 1080".
func describeInbounds(ins []server.InboundRequest) string {
	parts := make([]string, len(ins))
	for i, in := range ins {
		parts[i] = fmt.Sprintf("%s on port %d", in.Protocol, in.Port)
	}
	return strings.Join(parts, ", ")
}

// ensureServer returns the node's server named name, deploying it with
// want first when there is none, and adding the inbounds of want's
// protocols it lacks when there is. It says what it did.
func (a *app) ensureServer(cmd *cobra.Command, c *client.Client, name, nodeID string, want []server.InboundRequest) (server.Server, error) {
	var list server.ListResponse
	if err := c.Get(cmd.Context(), "/api/v1/servers", url.Values{"node": {nodeID}}, &list); err != nil {
		return server.Server{}, err
	}
	for _, s := range list.Servers {
		if s.Name != name {
			continue
		}
		have := make([]server.InboundRequest, 0, len(s.Inbounds))
		for _, in := range s.Inbounds {
			r := server.InboundRequest{Tag: in.Tag, Protocol: in.Protocol, Port: in.Port, Listen: in.Listen}
			if in.Reality != nil {
				r.Dest, r.ServerNames, r.ShortIDs, r.Fingerprint = in.Reality.Dest, in.Reality.ServerNames, in.Reality.ShortIDs, in.Reality.Fingerprint
			}
			if in.Shadowsocks != nil {
				r.Method = in.Shadowsocks.Method
			}
			have = append(have, r)
		}
		var missing []server.InboundRequest
		for _, w := range want {
			if !slices.ContainsFunc(have, func(h server.InboundRequest) bool { return h.Protocol == w.Protocol }) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			a.info("server %s already on node %s: %s", name, nodeID, describeInbounds(have))
			return s, nil
		}
		inbounds := append(have, missing...)
		var out server.Server
		body := map[string]any{"inbounds": inbounds, "expected_revision": s.Revision}
		if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPatch, Path: serverPath(s.ID), Body: body}, &out); err != nil {
			return out, onConflict(err, "", "another server on node "+nodeID+" has one of these ports; pick others with --port, --ss-port, --socks-port, --http-port")
		}
		a.info("server %s on node %s now also serves %s, so every protocol a user gets is served", name, nodeID, describeInbounds(missing))
		return out, nil
	}
	var s server.Server
	req := server.CreateRequest{Node: nodeID, Name: name, Inbounds: want}
	if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/servers", Body: req}, &s); err != nil {
		return s, onConflict(err, "", "another server on node "+nodeID+" has that name or one of these ports; pick others with --server-name, --port, --ss-port, --socks-port, --http-port")
	}
	a.info("deployed server %s on node %s: %s (every protocol a user gets)", name, nodeID, describeInbounds(want))
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
