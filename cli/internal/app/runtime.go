package app

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/shared/node"
)

// runtimeCmd is `vpn runtime`: where servers run on each node (Docker,
// containerd, processes) and the default for new ones.
func (a *app) runtimeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runtime", Aliases: []string{"runtimes"}, Short: "See and choose where servers run on each node (docker, containerd, process)",
		Example: "  vpn runtime status\n  vpn runtime switch --node fra-1 containerd"}
	var statusNode string
	status := &cobra.Command{
		Use:     "status",
		Short:   "Per node: the runtimes its agent offers, the default for new servers, and the servers on each with their health",
		Example: "  vpn runtime status\n  vpn runtime status --node fra-1 -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if statusNode != "" {
				q.Set("node", statusNode)
			}
			var resp node.RuntimesReply
			if err := c.Get(cmd.Context(), "/api/v1/runtimes", q, &resp); err != nil {
				return err
			}
			return a.printRuntimes(resp.Nodes)
		},
	}
	status.Flags().StringVar(&statusNode, "node", "", "only this node")

	var switchNode string
	sw := &cobra.Command{
		Use:     "switch --node NODE RUNTIME",
		Short:   "Make RUNTIME the default for new servers on a node; running servers stay where they run (move them with `vpn servers` --runtime)",
		Example: "  vpn runtime switch --node fra-1 containerd",
		Args:    args(1, "one runtime (docker, containerd or process)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if switchNode == "" {
				return usagef("--node is required: the node whose default changes (see `vpn runtime status`)")
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var en node.Enrollment
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPut, Path: "/api/v1/nodes/" + url.PathEscape(switchNode) + "/runtime",
				Body: map[string]string{"runtime": argv[0]}}, &en); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(en)
			}
			a.done("new servers on node %s start on %s; running servers stay where they run", switchNode, en.DefaultRuntime)
			return nil
		},
	}
	sw.Flags().StringVar(&switchNode, "node", "", "the node whose default changes")
	cmd.AddCommand(status, sw)
	return cmd
}

// runtimeRow is one line of `vpn runtime status`: a runtime of a node.
type runtimeRow struct {
	node, agent, kind, version, def string
	servers                         []node.RuntimeServer
}

func (a *app) printRuntimes(ns []node.NodeRuntimes) error {
	p := a.printer()
	if p.Structured() || a.quiet {
		return printList(a, ns, func(n node.NodeRuntimes) string { return n.Node }, nil, nil)
	}
	var rows []runtimeRow
	for _, n := range ns {
		for _, rt := range n.Runtimes {
			def := ""
			if rt.Kind == n.Default {
				def = "default (" + orDash(n.DefaultFrom) + ")"
			}
			rows = append(rows, runtimeRow{n.Node, n.Agent, rt.Kind, orDash(rt.Version), def, rt.Servers})
		}
		if len(n.Unplaced) > 0 || len(n.Runtimes) == 0 {
			rows = append(rows, runtimeRow{n.Node, n.Agent, "(none)", "-", "", n.Unplaced})
		}
	}
	return printList(a, rows, func(r runtimeRow) string { return r.node },
		[]string{"NODE", "AGENT", "RUNTIME", "VERSION", "DEFAULT", "SERVERS"},
		func(r runtimeRow, _ time.Time) []string {
			return []string{r.node, r.agent, r.kind, r.version, r.def, serversText(r.servers)}
		})
}

// serversText lists servers as "name (state users)", "-" for none.
func serversText(ss []node.RuntimeServer) string {
	if len(ss) == 0 {
		return "-"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		t := fmt.Sprintf("%s (%s %d/%d", s.Name, orDash(s.State), s.UsersApplied, s.UsersDesired)
		if s.Wanted != "" {
			t += ", wants " + s.Wanted
		}
		parts[i] = t + ")"
	}
	return strings.Join(parts, ", ")
}
