package app

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// subscription is the gateway's reply about a subscription URL.
type subscription struct {
	UserID  string            `json:"user_id"`
	Name    string            `json:"name"`
	Token   string            `json:"token"`
	URL     string            `json:"url"`
	Formats map[string]string `json:"formats"`
	// OutlineKey is the dynamic Outline access key (ssconf://), for users
	// with the outline protocol.
	OutlineKey string `json:"outline_key,omitempty"`
}

func userPath(ref string, rest ...string) string {
	p := "/api/v1/users/" + url.PathEscape(ref)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

func (a *app) usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Aliases: []string{"user", "u"}, Short: "Create, list and change VPN users",
		Example: "  vpn users create alice --limit 50GiB --expires 30d\n  vpn users list --status active\n  vpn users link alice --qr"}
	cmd.AddCommand(a.usersListCmd(), a.usersCreateCmd(), a.usersShowCmd(), a.usersUpdateCmd(),
		a.userActionCmd("disable", "Switch a user off (agents drop it)", "disable"),
		a.userActionCmd("enable", "Switch a user back on", "enable"),
		a.userActionCmd("reset-traffic", "Restart a user's traffic counters", "reset-traffic"),
		a.usersKickCmd(),
		a.usersDeleteCmd(), a.usersRotateCmd(), a.usersLinkCmd(), a.usersSubCmd(),
		a.usersImportCmd(), a.usersBulkCmd(), a.usersUsageCmd())
	return cmd
}

// protoShort are the short names tables show; a protocol without one
// shows its name.
var protoShort = map[user.Protocol]string{user.VLESSReality: "vless", user.Shadowsocks2022: "ss2022", user.SOCKS5: "socks5", user.HTTP: "http"}

func short(p user.Protocol) string {
	if s, ok := protoShort[p]; ok {
		return s
	}
	return string(p)
}

func protos(ps []user.Protocol) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = short(p)
	}
	return strings.Join(out, ",")
}

func limitText(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return output.Bytes(n)
}

func expiresText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func (a *app) printUsers(us []user.User) error {
	return printList(a, us, func(u user.User) string { return u.ID },
		[]string{"NAME", "STATUS", "PROTOCOLS", "USED", "LIMIT", "EXPIRES", "AGE"},
		func(u user.User, now time.Time) []string {
			return []string{u.Name, string(u.Status), protos(u.Protocols), output.Bytes(u.Usage.Used()), limitText(u.TrafficLimitBytes), expiresText(u.ExpiresAt), output.Age(now, u.CreatedAt)}
		})
}

func (a *app) printUser(u user.User) error {
	p := a.printer()
	switch {
	case p.Structured():
		return p.Value(u)
	case a.quiet:
		p.Line("%s", u.ID)
		return nil
	}
	placement := "all nodes"
	if !u.Placement.All {
		placement = "nodes " + strings.Join(u.Placement.Nodes, ",") + " groups " + strings.Join(u.Placement.Groups, ",")
	}
	pairs := [][2]string{
		{"ID", u.ID}, {"Name", u.Name}, {"Status", string(u.Status)},
		{"Protocols", strings.Join(enumStrings(u.Protocols), ", ")},
		{"Used", fmt.Sprintf("%s (up %s, down %s)", output.Bytes(u.Usage.Used()), output.Bytes(u.Usage.UsedUp), output.Bytes(u.Usage.UsedDown))},
		{"Limit", limitText(u.TrafficLimitBytes) + " (reset: " + string(u.LimitReset) + ")"},
		{"Expires", expiresText(u.ExpiresAt)},
		{"Placement", placement},
	}
	if u.Email != "" {
		pairs = append(pairs, [2]string{"Email", u.Email})
	}
	if u.Note != "" {
		pairs = append(pairs, [2]string{"Note", u.Note})
	}
	pairs = append(pairs, [2]string{"Created", output.Age(a.env.Now(), u.CreatedAt) + " ago"}, [2]string{"Revision", strconv.FormatUint(u.Revision, 10)})
	return p.KeyValues(pairs)
}

// onConflict rewrites a create's 409 (the name is taken) to say so, with
// what to do, instead of the gateway's generic advice about revisions. An
// empty detail keeps the gateway's (which lists the clashing fields).
func onConflict(err error, detail, hint string) error {
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		return err
	}
	if detail != "" {
		ae.Problem.Detail = detail
	}
	ae.Problem.Hint = hint
	return ae
}

func enumStrings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func (a *app) usersListCmd() *cobra.Command {
	var status, protocol, prefix, node, sort, cursor string
	var limit int
	var all bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List users (filters, sort, paging)",
		Example: "  vpn users list\n  vpn users list --status disabled --prefix trial- --sort -created_at\n  vpn users list --node fra-1 --all -q",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			set := func(k, v string) {
				if v != "" {
					q.Set(k, v)
				}
			}
			set("status", status)
			set("protocol", protocol)
			set("name_prefix", prefix)
			set("node", node)
			set("sort", sort)
			set("cursor", cursor)
			q.Set("limit", strconv.Itoa(limit))
			var us []user.User
			for {
				var page user.ListResponse
				if err := c.Get(cmd.Context(), "/api/v1/users", q, &page); err != nil {
					return err
				}
				us = append(us, page.Users...)
				if page.NextCursor == "" {
					break
				}
				if !all {
					a.info("more users: --cursor %s (or --all)", page.NextCursor)
					break
				}
				q.Set("cursor", page.NextCursor)
			}
			if us == nil {
				us = []user.User{}
			}
			return a.printUsers(us)
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only users in this status: active, disabled, limited, expired, on_hold")
	f.StringVar(&protocol, "protocol", "", "only users with this protocol")
	f.StringVar(&prefix, "prefix", "", "only users whose name starts with this")
	f.StringVar(&node, "node", "", "only users served by this node")
	f.StringVar(&sort, "sort", "", "name (default), created_at, -name or -created_at")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	f.IntVar(&limit, "limit", 100, "page size (1-1000)")
	f.BoolVar(&all, "all", false, "fetch every page")
	return cmd
}

// userFlags are the flags create and update share.
type userFlags struct {
	email, note, status, limit, reset, expires string
	protocols, nodes, groups                   []string
	onHoldDays                                 int
	noExpiry                                   bool
}

func (uf *userFlags) register(cmd *cobra.Command, update bool) {
	f := cmd.Flags()
	f.StringVar(&uf.email, "email", "", "contact address")
	f.StringVar(&uf.note, "note", "", "free-form note")
	f.StringVar(&uf.status, "status", "", "active, disabled or on_hold")
	f.StringSliceVar(&uf.protocols, "protocol", nil, "protocols the user may use (repeat or comma-separate): "+protocol.List()+" (default: "+defaultProtocols()+")")
	f.StringVar(&uf.limit, "limit", "", "traffic limit, e.g. 50GiB, 500MB, 0 for unlimited")
	f.StringVar(&uf.reset, "reset", "", "when counters restart: none, day, week, month, year")
	f.StringVar(&uf.expires, "expires", "", "expiry: a date (2026-12-31), an RFC 3339 time, or a duration from now (30d, 72h)")
	f.IntVar(&uf.onHoldDays, "on-hold-days", 0, "with --status on_hold: days of validity from first use")
	f.StringSliceVar(&uf.nodes, "node", nil, "serve only on these nodes (default: every node)")
	f.StringSliceVar(&uf.groups, "group", nil, "serve on the nodes of these groups")
	if update {
		f.BoolVar(&uf.noExpiry, "no-expiry", false, "remove the expiry")
	}
}

func (uf *userFlags) placement() *user.Placement {
	if len(uf.nodes) == 0 && len(uf.groups) == 0 {
		return nil
	}
	return &user.Placement{Nodes: uf.nodes, Groups: uf.groups}
}

func (a *app) usersCreateCmd() *cobra.Command {
	var uf userFlags
	var key string
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a user",
		Example: "  vpn users create alice\n  vpn users create bob --protocol vless-reality --limit 50GiB --expires 30d",
		Args:    args(1, "one user name"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			req := user.CreateRequest{Name: argv[0], Email: uf.email, Note: uf.note, Status: user.Status(uf.status),
				OnHoldDays: uf.onHoldDays, LimitReset: user.LimitReset(uf.reset), Placement: uf.placement(), IdempotencyKey: key}
			for _, p := range uf.protocols {
				req.Protocols = append(req.Protocols, user.Protocol(p))
			}
			var err error
			if req.TrafficLimitBytes, err = parseBytes(uf.limit); err != nil {
				return usagef("--limit: %v", err)
			}
			if req.ExpiresAt, err = parseExpiry(uf.expires, a.env.Now()); err != nil {
				return usagef("--expires: %v", err)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var u user.User
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/users", Body: req}, &u); err != nil {
				return onConflict(err, "user "+req.Name+" already exists",
					"pick another name; `vpn users show "+req.Name+"` shows the one there")
			}
			return a.printUser(u)
		},
	}
	uf.register(cmd, false)
	cmd.Flags().StringVar(&key, "idempotency-key", "", "makes a retried create return the same user")
	return cmd
}

func (a *app) usersShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Aliases: []string{"get"},
		Short:   "Show a user (by name or id)",
		Example: "  vpn users show alice\n  vpn users show alice -o json",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var u user.User
			if err := c.Get(cmd.Context(), userPath(argv[0]), nil, &u); err != nil {
				return err
			}
			return a.printUser(u)
		},
	}
}

func (a *app) usersUpdateCmd() *cobra.Command {
	var uf userFlags
	var name string
	var revision uint64
	cmd := &cobra.Command{
		Use:     "update NAME",
		Short:   "Change a user: only the flags given change",
		Example: "  vpn users update alice --limit 100GiB --expires 2027-01-01\n  vpn users update alice --no-expiry",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			ch := cmd.Flags().Changed
			body := map[string]any{}
			if ch("name") {
				body["name"] = name
			}
			if ch("email") {
				body["email"] = uf.email
			}
			if ch("note") {
				body["note"] = uf.note
			}
			if ch("status") {
				body["status"] = uf.status
			}
			if ch("protocol") {
				body["protocols"] = uf.protocols
			}
			if ch("limit") {
				n, err := parseBytes(uf.limit)
				if err != nil {
					return usagef("--limit: %v", err)
				}
				body["traffic_limit_bytes"] = n
			}
			if ch("reset") {
				body["limit_reset"] = uf.reset
			}
			if ch("on-hold-days") {
				body["on_hold_days"] = uf.onHoldDays
			}
			if ch("expires") {
				t, err := parseExpiry(uf.expires, a.env.Now())
				if err != nil {
					return usagef("--expires: %v", err)
				}
				body["expires_at"] = t
			}
			if uf.noExpiry {
				body["clear_expires_at"] = true
			}
			if p := uf.placement(); p != nil {
				body["placement"] = p
			}
			if len(body) == 0 {
				return usagef("nothing to change: give at least one flag (see `vpn users update --help`)")
			}
			if revision > 0 {
				body["expected_revision"] = revision
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var u user.User
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPatch, Path: userPath(argv[0]), Body: body}, &u); err != nil {
				return err
			}
			return a.printUser(u)
		},
	}
	uf.register(cmd, true)
	cmd.Flags().StringVar(&name, "name", "", "new name")
	cmd.Flags().Uint64Var(&revision, "revision", 0, "apply only if the user is still at this revision")
	return cmd
}

func (a *app) userActionCmd(use, short, action string) *cobra.Command {
	return &cobra.Command{
		Use:     use + " NAME",
		Short:   short,
		Example: "  vpn users " + use + " alice",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var u user.User
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: userPath(argv[0], action)}, &u); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printUser(u)
			}
			a.done("user %s: %s", u.Name, u.Status)
			return nil
		},
	}
}

// cutSessions is the gateway's reply to POST /users/{user}/sessions/cut.
type cutSessions struct {
	User   string `json:"user"`
	Closed int    `json:"closed"`
	Nodes  []struct {
		Node               string   `json:"node"`
		Closed             int      `json:"closed"`
		UnsupportedServers []string `json:"unsupported_servers"`
		Skipped            string   `json:"skipped"`
		Error              string   `json:"error"`
	} `json:"nodes"`
}

func (a *app) usersKickCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "kick NAME",
		Short: "End the connections a user has open on every node, without changing the user",
		Long: "End the connections a user has open on every node that is up. The user is not changed:\n" +
			"if still allowed, its clients may connect again at once (disable the user to lock it out,\n" +
			"which ends its connections too). Nodes whose Xray cannot end sessions are named.",
		Example: "  vpn users kick alice",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var out cutSessions
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: userPath(argv[0], "sessions", "cut")}, &out); err != nil {
				return err
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(out)
			}
			asked := 0
			for _, n := range out.Nodes {
				switch {
				case n.Skipped != "":
				case n.Error != "":
					fmt.Fprintf(a.env.Stderr, "node %s did not answer: %s\n", n.Node, n.Error)
				default:
					asked++
					if len(n.UnsupportedServers) > 0 {
						fmt.Fprintf(a.env.Stderr, "node %s: servers %s run an Xray that cannot end sessions\n", n.Node, strings.Join(n.UnsupportedServers, ","))
					}
				}
			}
			a.done("ended %d connections of %s on %d nodes", out.Closed, argv[0], asked)
			return nil
		},
	}
}

// done confirms a change on stdout, unless --quiet.
func (a *app) done(format string, args ...any) {
	if !a.quiet {
		fmt.Fprintln(a.env.Stdout, output.Sprintf(format, args...))
	}
}

func (a *app) usersDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm"},
		Short:   "Delete a user",
		Example: "  vpn users delete alice",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var d user.DeleteResponse
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodDelete, Path: userPath(argv[0])}, &d); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(d)
			}
			a.done("user %s deleted", argv[0])
			return nil
		},
	}
}

func (a *app) usersRotateCmd() *cobra.Command {
	var protocols []string
	var subToo bool
	cmd := &cobra.Command{
		Use:     "rotate NAME",
		Short:   "Replace a user's credentials (old links stop working)",
		Example: "  vpn users rotate alice\n  vpn users rotate alice --protocol vless-reality --subscription",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var u user.User
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: userPath(argv[0], "rotate"), Body: map[string]any{"protocols": protocols}}, &u); err != nil {
				return err
			}
			if subToo {
				if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: userPath(argv[0], "subscription", "rotate")}, nil); err != nil {
					return err
				}
			}
			if a.printer().Structured() {
				return a.printUser(u)
			}
			a.done("user %s: credentials rotated; hand out new links with `vpn users link %s`", u.Name, u.Name)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&protocols, "protocol", nil, "rotate only these protocols (default: all)")
	cmd.Flags().BoolVar(&subToo, "subscription", false, "also replace the subscription URL")
	return cmd
}

func (a *app) usersLinkCmd() *cobra.Command {
	var qr, all bool
	var qrFile, server, protocol string
	cmd := &cobra.Command{
		Use:     "link NAME",
		Aliases: []string{"links"},
		Short:   "Print a user's client links (and a QR code)",
		Example: "  vpn users link alice --qr\n  vpn users link alice --qr-file alice.png",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			var lr user.LinksResponse
			if err := c.Get(cmd.Context(), userPath(argv[0], "links"), q, &lr); err != nil {
				return err
			}
			var picked []user.Link
			for _, l := range lr.Links {
				if (server == "" || l.Server == server) && (protocol == "" || string(l.Protocol) == protocol) {
					picked = append(picked, l)
				}
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(user.LinksResponse{Links: picked, Missing: lr.Missing})
			}
			for _, m := range lr.Missing {
				a.info("no %s link on node %s: %s", m.Protocol, orDash(m.Node), m.Reason)
			}
			if len(picked) == 0 {
				return fmt.Errorf("user %s has no link yet\nhint: deploy a server on a healthy node (`vpn servers deploy`), wait until it is applied (`vpn servers list`), then retry", argv[0])
			}
			for _, l := range picked {
				p.Line("%s", l.URL)
			}
			if !qr && qrFile == "" {
				return nil
			}
			first := picked[0]
			qq := url.Values{"server": {first.Server}, "protocol": {string(first.Protocol)}}
			if qr {
				qq.Set("format", "text")
				text, err := c.Bytes(cmd.Context(), client.Request{Method: http.MethodGet, Path: userPath(argv[0], "qr"), Query: qq})
				if err != nil {
					return err
				}
				a.info("QR code of the %s link on server %s:", first.Protocol, first.Server)
				fmt.Fprint(a.env.Stdout, output.EscapeLines(string(text)))
			}
			if qrFile != "" {
				qq.Set("format", "png")
				png, err := c.Bytes(cmd.Context(), client.Request{Method: http.MethodGet, Path: userPath(argv[0], "qr"), Query: qq})
				if err != nil {
					return err
				}
				if err := os.WriteFile(qrFile, png, 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", qrFile, err)
				}
				a.info("QR code written to %s", qrFile)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&qr, "qr", false, "print a QR code of the first link in the terminal")
	f.StringVar(&qrFile, "qr-file", "", "write a QR code of the first link as PNG to this file")
	f.StringVar(&server, "server", "", "only links on this server id")
	f.StringVar(&protocol, "protocol", "", "only links of this protocol")
	f.BoolVar(&all, "all", false, "include nodes that are not healthy")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *app) usersSubCmd() *cobra.Command {
	var rotate bool
	var format string
	cmd := &cobra.Command{
		Use:     "sub NAME",
		Aliases: []string{"subscription"},
		Short:   "Print a user's subscription URL (import it in a client app)",
		Example: "  vpn users sub alice\n  vpn users sub alice --format clash\n  vpn users sub carol --format outline\n  vpn users sub alice --rotate",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			req := client.Request{Method: http.MethodGet, Path: userPath(argv[0], "subscription")}
			if rotate {
				req = client.Request{Method: http.MethodPost, Path: userPath(argv[0], "subscription", "rotate")}
			}
			var s subscription
			if err := c.Do(cmd.Context(), req, &s); err != nil {
				return err
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(s)
			}
			u := s.URL
			if format == user.FormatOutline {
				if s.OutlineKey == "" {
					return usagef("--format outline: %s does not have the outline protocol", s.Name)
				}
				u = s.OutlineKey
			} else if format != "" {
				f, ok := s.Formats[format]
				if !ok {
					return usagef("--format must be base64, clash or sing-box")
				}
				u = f
			}
			p.Line("%s", u)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the URL; the old one stops working")
	cmd.Flags().StringVar(&format, "format", "", "print the URL that asks for this format: base64, clash or sing-box; outline prints the dynamic Outline access key (ssconf://)")
	return cmd
}

// parseBytes reads a size: 0, 1024, 500MB, 50GiB, 1.5TB.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(s), strings.ToUpper(u.suffix)) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("%q is not a size like 50GiB or 500MB", s)
	}
	return int64(v * mult), nil
}

// parseExpiry reads an expiry: a date, an RFC 3339 time or a duration from
// now (30d, 72h).
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return now.Add(time.Duration(n) * 24 * time.Hour).UTC().Round(time.Second), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d).UTC().Round(time.Second), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (2026-12-31), an RFC 3339 time or a duration (30d, 72h)", s)
}

// defaultProtocols lists the protocols a user gets when a create names
// none.
func defaultProtocols() string {
	names := make([]string, len(user.Protocols))
	for i, p := range user.Protocols {
		names[i] = string(p)
	}
	return strings.Join(names, ", ")
}
