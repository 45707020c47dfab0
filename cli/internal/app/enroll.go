package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/node"
)

// enrollCmds are the `vpn nodes` commands that enroll, regroup and revoke
// nodes (the fleet service decides; these ask it through the gateway).
func (a *app) enrollCmds() []*cobra.Command {
	return []*cobra.Command{a.nodesAddCmd(), a.nodesRevokeCmd(), a.nodesGroupsCmd(), a.nodesEnrollmentsCmd()}
}

func nodePath(id string, rest ...string) string {
	p := "/api/v1/nodes/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// groupList reads "eu,de" (spaces allowed, empty items dropped); "" is no
// groups.
func groupList(s string) []string {
	out := []string{}
	for _, g := range strings.Split(s, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

func groupsText(groups []string) string {
	if len(groups) == 0 {
		return "-"
	}
	return strings.Join(groups, ",")
}

func (a *app) nodesAddCmd() *cobra.Command {
	var groups []string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Enroll a node and print the one command that joins its host (a single-use join token)",
		Long: `Enroll a node: it gets the groups given and a join token that works once,
until it expires. Run the command printed on the new host: the first line
installs vpn-agent and Xray from the gateway (GET /install/agent.sh, checked
against their SHA-256), joins and starts the systemd service; the second
joins where vpn-agent is installed already. The agent trades the token for
a credential of its own. Adding a pending node again issues a
new token (the old one stops working); a joined node must be revoked first.
Needs an admin token: a join token grants a host access to the bus.`,
		Example: "  vpn nodes add eu1 --groups eu,de\n  vpn nodes add eu2 --ttl 24h -o json\n  vpn nodes add eu3 -q",
		Args:    args(1, "one node name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			body := map[string]any{"name": argv[0]}
			if len(groups) > 0 {
				body["groups"] = groups
			}
			if ttl != 0 {
				body["ttl"] = ttl.String()
			}
			var resp node.AddResponse
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/nodes", Body: body}, &resp); err != nil {
				return err
			}
			p := a.printer()
			switch {
			case p.Structured():
				return p.Value(resp)
			case a.quiet:
				p.Line("%s", resp.Token)
				return nil
			}
			now := a.env.Now()
			p.Line("node %s enrolled (groups: %s); on the new host, as root, run:", resp.Enrollment.ID, groupsText(resp.Enrollment.Groups))
			p.Line("")
			if resp.InstallCommand != "" {
				p.Line("  %s", resp.InstallCommand)
				p.Line("")
				p.Line("(it installs vpn-agent and Xray from the gateway, joins and starts the service), or, where vpn-agent is installed:")
				p.Line("")
			}
			p.Line("  %s", resp.Command)
			p.Line("")
			p.Line("The token works once, until %s (in %s). `vpn nodes enrollments` shows when the node joins.",
				resp.Expires.Local().Format(time.DateTime), output.Age(resp.Expires, now))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&groups, "groups", nil, "the node's groups (comma-separated); users placed in a group are served there")
	f.DurationVar(&ttl, "ttl", 0, "how long the join token works, 1m-168h (default 1h)")
	return cmd
}

func (a *app) nodesRevokeCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node: its credential stops working at once and it serves nothing more",
		Long: `Revoke a node: the server closes its agent's connection and refuses its
credential from then on, and it is given nothing more to serve. Asks for
confirmation on a terminal; without one, --yes is required. Bring the host
back with 'vpn nodes add' and a new join. Needs an admin token.`,
		Example: "  vpn nodes revoke eu1\n  vpn nodes revoke eu1 --yes",
		Args:    args(1, "one node name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			id := argv[0]
			if !yes {
				if !a.env.Interactive {
					return usagef("revoking node %s cuts it off at once: confirm with --yes (there is no terminal to ask on)", id)
				}
				ok, err := a.confirm(fmt.Sprintf("revoke node %s? Its agent is disconnected at once and serves nothing more", id))
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("node %s not revoked", output.Escape(id))
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var en node.Enrollment
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: nodePath(id, "revoke")}, &en); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(en)
			}
			a.done("node %s revoked", en.ID)
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirm asks a yes/no question on stderr; only y or yes is yes.
func (a *app) confirm(question string) (bool, error) {
	fmt.Fprintf(a.env.Stderr, "%s [y/N]: ", output.Escape(question))
	line, err := bufio.NewReader(a.env.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

func (a *app) nodesGroupsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "groups NAME GROUPS",
		Short:   "Set a node's groups (comma-separated; \"\" for none); what it serves follows",
		Example: "  vpn nodes groups eu1 eu,de\n  vpn nodes groups eu1 \"\"",
		Args:    args(2, "a node name and its groups (comma-separated)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var en node.Enrollment
			req := client.Request{Method: http.MethodPut, Path: nodePath(argv[0], "groups"), Body: map[string][]string{"groups": groupList(argv[1])}}
			if err := c.Do(cmd.Context(), req, &en); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(en)
			}
			a.done("node %s: groups %s", en.ID, groupsText(en.Groups))
			return nil
		},
	}
}

func (a *app) nodesEnrollmentsCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "enrollments",
		Aliases: []string{"enrolled"},
		Short:   "List enrolled nodes: state (pending, joined, revoked), groups, when they joined",
		Example: "  vpn nodes enrollments\n  vpn nodes enrollments -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var resp node.EnrollmentsResponse
			if err := c.Get(cmd.Context(), "/api/v1/enrollments", nil, &resp); err != nil {
				return err
			}
			return printList(a, resp.Enrollments, func(en node.Enrollment) string { return en.ID },
				[]string{"NODE", "STATE", "GROUPS", "JOINED", "CREATED"},
				func(en node.Enrollment, now time.Time) []string {
					state := en.State
					if en.State == node.EnrollPending && !en.JoinExpires.IsZero() {
						if en.JoinExpires.After(now) {
							state += " (token expires in " + output.Age(en.JoinExpires, now) + ")"
						} else {
							state += " (token expired)"
						}
					}
					return []string{en.ID, state, groupsText(en.Groups), output.Age(now, en.JoinedAt), output.Age(now, en.CreatedAt)}
				})
		},
	}
}
