// Command vpn-agent runs on every VPN host: it dials out to NATS, drives
// the host's container runtime (or supervises processes) and reports the
// node's health, events and stats.
package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

type cfg struct {
	Svc     svc.Config
	Agent   agent.Config
	DataDir string `flag:"data-dir" env:"VPN_DATA_DIR" help:"directory for the node id, its credential, the outbox and process logs"`
	Join    string `flag:"join" env:"VPN_JOIN_TOKEN" secret:"true" help:"join token from 'vpn nodes add': trade it for this node's credential (kept in the data dir), then run"`
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
	// The agent owns this process: once its runtimes are open it keeps
	// only the capabilities it uses there.
	c.Agent.LimitCapabilities = true
	if ok, err := svc.Healthcheck(ctx, "vpn-agent", &c, func() string { return c.Svc.OpsAddr }, args, getenv, stdout); ok {
		return err
	}
	if len(args) > 0 && args[0] == joinCmd {
		return joinOnly(ctx, &c, args[1:], getenv, stdout)
	}
	if err := config.Load("vpn-agent", &c, args, getenv, stdout); err != nil {
		return err
	}
	if err := useNodeCredential(ctx, &c); err != nil {
		return err
	}
	return svc.Standalone(ctx, "vpn-agent", version.Version, c.Svc, stdout, func(ctx context.Context, env svc.Env) error {
		env.DataDir = c.DataDir
		return agent.Run(ctx, c.Agent, env)
	})
}

// joinCmd is `vpn-agent join [TOKEN]`: join and exit, so an installer
// joins once, before it installs anything, and the service it starts
// later finds the credential in the data dir.
const joinCmd = "join"

// joinOnly trades the token (the argument, else --join or
// VPN_JOIN_TOKEN) for this node's credential in the data dir and returns.
// The token this host already joined with succeeds again at once.
func joinOnly(ctx context.Context, c *cfg, args []string, getenv func(string) string, stdout io.Writer) error {
	var token string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		token, args = args[0], args[1:]
	}
	if err := config.Load("vpn-agent join", c, args, getenv, stdout); err != nil {
		return err
	}
	if token != "" {
		c.Join = token
	}
	if c.Join == "" {
		return errs.Field("join", "is required: vpn-agent join TOKEN, or VPN_JOIN_TOKEN (`vpn nodes add NAME` prints a token)")
	}
	if err := useNodeCredential(ctx, c); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "joined as node %s (credential in %s)\n", c.Agent.NodeID, filepath.Join(c.DataDir, "nats"))
	return nil
}

// useNodeCredential joins with --join, or finds the credential an earlier
// join kept, and dials NATS with it: the node's URLs (unless --nats-url is
// given), its creds file, its CA and its own inbox prefix. Without either,
// the agent dials with --nats-creds as given.
func useNodeCredential(ctx context.Context, c *cfg) error {
	var j agent.Joined
	switch {
	case c.Join != "":
		if err := tokenFor(c.Join, c.Agent.NodeID); err != nil {
			return err
		}
		joined, err := agent.Join(ctx, c.Join, c.DataDir)
		if err != nil {
			return err
		}
		j = joined
	default:
		joined, ok, err := agent.LoadJoined(c.DataDir)
		if err != nil {
			return err
		}
		if !ok {
			// A credential given with --nats-creds: a node credential lets
			// the node read replies under its own inbox prefix only.
			id, err := agent.NodeID(c.Agent.NodeID, c.DataDir)
			if err != nil {
				return err
			}
			c.Agent.NodeID = id
			c.Svc.DialOptions = append(c.Svc.DialOptions, nats.CustomInboxPrefix(subject.NodeInboxPrefix(id)))
			return nil
		}
		j = joined
	}
	if c.Agent.NodeID != "" && c.Agent.NodeID != j.Node {
		return errs.Field("node_id", "must be "+j.Node+", the node this host joined as (or be left out)")
	}
	c.Agent.NodeID = j.Node
	if c.Svc.NATSURL == svc.Defaults("").NATSURL {
		c.Svc.NATSURL = j.ServerURLs()
	}
	opts, err := j.DialOptions()
	if err != nil {
		return err
	}
	c.Svc.DialOptions = append(c.Svc.DialOptions, opts...)
	return nil
}

// tokenFor refuses, before anything is sent or written, a token that
// enrolls another node than --node-id names. A token that does not decode
// is left to agent.Join, which says why (or accepts the token this host
// already joined with, even once expired).
func tokenFor(token, nodeID string) error {
	if nodeID == "" {
		return nil
	}
	tok, err := natsauth.DecodeJoinToken(token)
	if err != nil {
		return nil
	}
	if tok.Node != nodeID {
		return errs.Field("node_id", "must be "+tok.Node+", the node this join token enrolls (or be left out)")
	}
	return nil
}
