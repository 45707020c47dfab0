package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// nodeView is a node as the gateway reports it.
type nodeView struct {
	node.Node
	Healthy             bool    `json:"healthy"`
	HeartbeatAgeSeconds float64 `json:"heartbeat_age_seconds"`
	Health              string  `json:"health,omitempty"`
	HealthReason        string  `json:"health_reason,omitempty"`
	HealthFrom          string  `json:"health_from,omitempty"`
}

func (a *app) nodesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "nodes", Aliases: []string{"node"}, Short: "List the hosts whose agents serve VPN users",
		Example: "  vpn nodes list\n  vpn nodes stats fra-1 --from 24h"}
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List nodes with their health (from the health service, else the agent's heartbeat)",
		Example: "  vpn nodes list\n  vpn nodes list -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns, err := a.listNodes(cmd)
			if err != nil {
				return err
			}
			return printList(a, ns, func(n nodeView) string { return n.ID },
				[]string{"ID", "PUBLIC ADDR", "RUNTIME", "STATE", "HEALTH", "HEARTBEAT", "AGENT"},
				func(n nodeView, now time.Time) []string {
					health := "healthy"
					if !n.Healthy {
						health = "unhealthy"
					}
					if n.Health != "" {
						health = n.Health
						if n.HealthReason != "" {
							health += ": " + n.HealthReason
						}
					}
					return []string{n.ID, n.PublicAddr, n.Runtime, n.State, health, output.Age(now, n.HeartbeatAt), n.AgentVersion}
				})
		},
	}, a.nodesStatsCmd())
	cmd.AddCommand(a.enrollCmds()...)
	return cmd
}

func (a *app) listNodes(cmd *cobra.Command) ([]nodeView, error) {
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	var resp struct {
		Nodes []nodeView `json:"nodes"`
	}
	if err := c.Get(cmd.Context(), "/api/v1/nodes", nil, &resp); err != nil {
		return nil, err
	}
	return resp.Nodes, nil
}

func serverPath(ref string, rest ...string) string {
	p := "/api/v1/servers/" + url.PathEscape(ref)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func inboundsText(s server.Server) string {
	parts := make([]string, len(s.Inbounds))
	for i, in := range s.Inbounds {
		parts[i] = short(in.Protocol) + ":" + strconv.Itoa(in.Port)
	}
	return strings.Join(parts, ",")
}

func stateText(s server.Server) string {
	if s.Status.State == "" {
		return string(server.StatePending)
	}
	return string(s.Status.State)
}

// usersText is how many of the server's users its Xray holds, "-" when
// its agent did not count them.
func usersText(s server.Server) string {
	st := s.Status
	if st.UsersDesired == 0 && st.UsersApplied == 0 && st.UsersExtra == 0 {
		return "-"
	}
	t := fmt.Sprintf("%d/%d", st.UsersApplied, st.UsersDesired)
	if st.UsersExtra > 0 {
		t += fmt.Sprintf(" (+%d)", st.UsersExtra)
	}
	return t
}

// runtimeText is where the server runs and, when it differs, where it
// is asked to run ("docker → containerd" while it moves).
func runtimeText(s server.Server) string {
	run, want := s.Status.Runtime, s.Runtime
	switch {
	case run == "" && want == "":
		return "- (the node's default)"
	case run == "":
		return want
	case want == "" || want == run:
		return run
	}
	return run + " → " + want
}

func (a *app) printServers(ss []server.Server) error {
	return printList(a, ss, func(s server.Server) string { return s.ID },
		[]string{"ID", "NAME", "NODE", "STATE", "USERS", "INBOUNDS", "HOST", "AGE"},
		func(s server.Server, now time.Time) []string {
			return []string{s.ID, s.Name, s.Node, stateText(s), usersText(s), inboundsText(s), orDash(s.Status.PublicHost), output.Age(now, s.CreatedAt)}
		})
}

func (a *app) printServer(s server.Server) error {
	p := a.printer()
	switch {
	case p.Structured():
		return p.Value(s)
	case a.quiet:
		p.Line("%s", s.ID)
		return nil
	}
	pairs := [][2]string{{"ID", s.ID}, {"Name", s.Name}, {"Node", s.Node}, {"Engine", s.Engine}, {"State", stateText(s)}}
	if s.Status.Reason != "" {
		pairs = append(pairs, [2]string{"Reason", s.Status.Reason})
	}
	if u := usersText(s); u != "-" {
		pairs = append(pairs, [2]string{"Users", u + " applied (applied/desired, +extra)"})
	}
	pairs = append(pairs, [2]string{"Runtime", runtimeText(s)}, [2]string{"Host", orDash(s.Status.PublicHost)})
	for _, in := range s.Inbounds {
		v := fmt.Sprintf("%s port %d", in.Protocol, in.Port)
		if in.Reality != nil {
			v += fmt.Sprintf(", dest %s, sni %s", in.Reality.Dest, strings.Join(in.Reality.ServerNames, ","))
		}
		if in.Shadowsocks != nil {
			v += ", " + in.Shadowsocks.Method
		}
		pairs = append(pairs, [2]string{"Inbound " + in.Tag, v})
	}
	pairs = append(pairs, [2]string{"Created", output.Age(a.env.Now(), s.CreatedAt) + " ago"}, [2]string{"Revision", strconv.FormatUint(s.Revision, 10)})
	return p.KeyValues(pairs)
}

// deployFlags describe one inbound.
type deployFlags struct {
	node, protocol, dest, method string
	runtime                      string
	sni                          []string
	port                         int
}

func (d *deployFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&d.node, "node", "", "node to deploy on (default: the only healthy node)")
	f.StringVar(&d.protocol, "protocol", string(user.VLESSReality), "one of "+protocol.List())
	f.IntVar(&d.port, "port", 8443, "port clients connect to")
	f.StringVar(&d.dest, "dest", "www.microsoft.com:443", "vless-reality: the TLS 1.3 site REALITY borrows (host:port)")
	f.StringSliceVar(&d.sni, "sni", nil, "vless-reality: server names clients present (default: dest's host)")
	f.StringVar(&d.method, "method", "", "shadowsocks-2022: 2022-blake3-aes-128-gcm (default) or -aes-256-gcm; outline: chacha20-ietf-poly1305 (default), aes-128-gcm or aes-256-gcm")
	f.StringVar(&d.runtime, "runtime", "", "docker, containerd or process (default: the node's default runtime)")
}

// check refuses what the servers service would refuse naming a field
// the operator never typed: a REALITY dest given as an IP address needs
// the server name clients present (--sni), which an IP cannot supply.
func (d *deployFlags) check() error {
	if user.Protocol(d.protocol) != user.VLESSReality || len(d.sni) > 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(d.dest)
	if err != nil || net.ParseIP(host) == nil {
		return nil // the servers service says what is wrong with it
	}
	return usagef("--dest %s is an IP address, so REALITY cannot take the server name from it: give the name clients present with --sni (e.g. --sni www.example.com)", d.dest)
}

func (d *deployFlags) request(name, nodeID string) server.CreateRequest {
	in := server.InboundRequest{Protocol: user.Protocol(d.protocol), Port: d.port}
	if in.Protocol == user.VLESSReality {
		in.Dest, in.ServerNames = d.dest, d.sni
	}
	if pd, ok := protocol.Get(in.Protocol); ok && slices.Contains(pd.RequestFields, "method") {
		in.Method = d.method
	}
	return server.CreateRequest{Node: nodeID, Name: name, Runtime: d.runtime, Inbounds: []server.InboundRequest{in}}
}

// pickNode returns want, or the only healthy node.
func (a *app) pickNode(cmd *cobra.Command, want string) (string, error) {
	if want != "" {
		return want, nil
	}
	ns, err := a.listNodes(cmd)
	if err != nil {
		return "", err
	}
	var healthy []string
	for _, n := range ns {
		if n.Healthy {
			healthy = append(healthy, n.ID)
		}
	}
	switch len(healthy) {
	case 1:
		return healthy[0], nil
	case 0:
		return "", fmt.Errorf("no healthy node to deploy on\nhint: vpnd runs a local agent by default; check `vpn nodes list` and the agent's logs")
	}
	return "", usagef("%d healthy nodes (%s): choose one with --node", len(healthy), strings.Join(healthy, ", "))
}

func (a *app) serversCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "servers", Aliases: []string{"server", "s"}, Short: "Deploy and manage VPN servers on nodes",
		Example: "  vpn servers deploy reality --port 8443 --dest www.microsoft.com:443\n  vpn servers list\n  vpn servers logs reality -f"}
	var d deployFlags
	deploy := &cobra.Command{
		Use:     "deploy NAME",
		Short:   "Deploy a server (one inbound) on a node",
		Example: "  vpn servers deploy reality --port 8443 --dest www.microsoft.com:443\n  vpn servers deploy ss --protocol shadowsocks-2022 --port 8388",
		Args:    args(1, "one server name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := d.check(); err != nil {
				return err
			}
			nodeID, err := a.pickNode(cmd, d.node)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var s server.Server
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/servers", Body: d.request(argv[0], nodeID)}, &s); err != nil {
				return onConflict(err, "", "a server on node "+nodeID+" already has that name or port; pick another (`vpn servers list --node "+nodeID+"` shows what is taken)")
			}
			return a.printServer(s)
		},
	}
	d.register(deploy)

	var listNode string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List servers",
		Example: "  vpn servers list\n  vpn servers list -q",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if listNode != "" {
				q.Set("node", listNode)
			}
			var resp server.ListResponse
			if err := c.Get(cmd.Context(), "/api/v1/servers", q, &resp); err != nil {
				return err
			}
			if resp.Servers == nil {
				resp.Servers = []server.Server{}
			}
			return a.printServers(resp.Servers)
		},
	}
	list.Flags().StringVar(&listNode, "node", "", "only this node's servers")

	show := &cobra.Command{
		Use:     "show SERVER",
		Aliases: []string{"get"},
		Short:   "Show a server (by id or name)",
		Example: "  vpn servers show reality\n  vpn servers show reality -o yaml",
		Args:    args(1, "one server id or name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var s server.Server
			if err := c.Get(cmd.Context(), serverPath(argv[0]), nil, &s); err != nil {
				return err
			}
			return a.printServer(s)
		},
	}
	remove := &cobra.Command{
		Use:     "remove SERVER",
		Aliases: []string{"rm", "delete"},
		Short:   "Remove a server; its agent stops it",
		Example: "  vpn servers remove reality",
		Args:    args(1, "one server id or name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodDelete, Path: serverPath(argv[0])}, nil); err != nil {
				return err
			}
			a.done("server %s removed", argv[0])
			return nil
		},
	}
	restart := &cobra.Command{
		Use:     "restart SERVER",
		Short:   "Restart a server's workload on its node",
		Example: "  vpn servers restart reality",
		Args:    args(1, "one server id or name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var w node.Workload
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: serverPath(argv[0], "restart")}, &w); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(w)
			}
			a.done("server %s restarted (%s, %d restarts)", argv[0], w.State, w.RestartCount)
			return nil
		},
	}
	cmd.AddCommand(deploy, list, show, remove, restart, a.logsCmd())
	return cmd
}

func (a *app) logsCmd() *cobra.Command {
	var follow, stamps bool
	var tail int
	cmd := &cobra.Command{
		Use:     "logs SERVER",
		Short:   "Print a server's output (-f follows it)",
		Example: "  vpn servers logs reality --tail 50\n  vpn servers logs reality -f --timestamps",
		Args:    args(1, "one server id or name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"tail": {strconv.Itoa(tail)}}
			if stamps {
				q.Set("timestamps", "true")
			}
			print := func(l node.LogLine) {
				if a.printer().Structured() {
					_ = json.NewEncoder(a.env.Stdout).Encode(l)
					return
				}
				if stamps && !l.Time.IsZero() {
					fmt.Fprintf(a.env.Stdout, "%s %s\n", l.Time.UTC().Format(time.RFC3339Nano), output.Escape(l.Text))
					return
				}
				fmt.Fprintln(a.env.Stdout, output.Escape(l.Text))
			}
			if !follow {
				var r node.LogsReply
				if err := c.Get(cmd.Context(), serverPath(argv[0], "logs"), q, &r); err != nil {
					return err
				}
				for _, l := range r.Lines {
					print(l)
				}
				return nil
			}
			q.Set("follow", "true")
			resp, err := c.Send(cmd.Context(), client.Request{Method: http.MethodGet, Path: serverPath(argv[0], "logs"), Query: q, Header: http.Header{"Accept": {"application/x-ndjson"}}})
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var l node.LogLine
				if json.Unmarshal(sc.Bytes(), &l) == nil {
					print(l)
				}
			}
			if cmd.Context().Err() != nil {
				return nil
			}
			return sc.Err()
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C")
	cmd.Flags().IntVar(&tail, "tail", 200, "last N lines (0-10000)")
	cmd.Flags().BoolVar(&stamps, "timestamps", false, "print each line's time")
	return cmd
}
