package app

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/event"
)

// rangeFlags are --from, --to and --step of the history commands.
type rangeFlags struct{ from, to, step string }

func (rf *rangeFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&rf.from, "from", "", "start: an RFC 3339 time, a date, or how long ago (6h, 7d) (default: an hour before --to)")
	f.StringVar(&rf.to, "to", "", "end, like --from (default: now)")
	f.StringVar(&rf.step, "step", "", "point width, e.g. 1m, 1h (default: the finest kept)")
}

// query turns the flags into the routes' query.
func (rf *rangeFlags) query(now time.Time) (url.Values, error) {
	q := url.Values{}
	for _, f := range []struct{ name, v string }{{"from", rf.from}, {"to", rf.to}} {
		if f.v == "" {
			continue
		}
		t, err := parseAgo(f.v, now)
		if err != nil {
			return nil, usagef("--%s: %v", f.name, err)
		}
		q.Set(f.name, t.UTC().Format(time.RFC3339))
	}
	if rf.step != "" {
		d, err := parseDays(rf.step)
		if err != nil {
			return nil, usagef("--step: %v", err)
		}
		q.Set("step", d.String())
	}
	return q, nil
}

// parseAgo reads a time: RFC 3339, a date, or a duration back from now.
func parseAgo(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := parseDays(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339), a date or a duration ago (6h, 7d)", s)
}

// parseDays reads a Go duration or whole days ("7d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && fmt.Sprint(n) == d {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 1m, 1h or 7d", s)
	}
	return d, nil
}

// sparkline draws values as one line of block characters.
func sparkline(vs []int64) string {
	const bars = "▁▂▃▄▅▆▇█"
	blocks := []rune(bars)
	var top int64
	for _, v := range vs {
		top = max(top, v)
	}
	var b strings.Builder
	for _, v := range vs {
		i := 0
		if top > 0 {
			i = int(v * int64(len(blocks)-1) / top)
		}
		b.WriteRune(blocks[i])
	}
	return b.String()
}

func (a *app) nodesStatsCmd() *cobra.Command {
	var rf rangeFlags
	cmd := &cobra.Command{
		Use:     "stats NODE",
		Short:   "A node's history: CPU, memory, disk, network and VPN traffic (from the health service)",
		Example: "  vpn nodes stats fra-1\n  vpn nodes stats fra-1 --from 7d --step 1h",
		Args:    args(1, "one node id (see `vpn nodes list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			q, err := rf.query(a.env.Now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var r event.StatsReply
			if err := c.Get(cmd.Context(), "/api/v1/nodes/"+url.PathEscape(argv[0])+"/stats", q, &r); err != nil {
				return err
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(r)
			}
			if len(r.Points) == 0 {
				a.info("no samples of node %s between %s and %s", r.Node, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
				return nil
			}
			rows := make([][]string, len(r.Points))
			var traffic []int64
			for i, pt := range r.Points {
				mem := "-"
				if pt.MemTotal > 0 {
					mem = fmt.Sprintf("%.0f%%", pt.MemUsedAvg*100/float64(pt.MemTotal))
				}
				disk := "-"
				if pt.DiskTotal > 0 {
					disk = fmt.Sprintf("%.0f%%", float64(pt.DiskUsed)*100/float64(pt.DiskTotal))
				}
				rows[i] = []string{pt.Start.UTC().Format("01-02 15:04"), fmt.Sprintf("%.0f%%", pt.CPUAvg), fmt.Sprintf("%.0f%%", pt.CPUMax), mem, disk,
					output.Bytes(int64(pt.NetRx)), output.Bytes(int64(pt.NetTx))}
				traffic = append(traffic, int64(pt.NetRx+pt.NetTx))
			}
			if err := p.Table([]string{"START", "CPU", "CPU MAX", "MEM", "DISK", "NET RX", "NET TX"}, rows); err != nil {
				return err
			}
			p.Line("network %s  (%s resolution, step %s)", sparkline(traffic), r.Resolution, r.Step)
			return nil
		},
	}
	rf.register(cmd)
	return cmd
}

func (a *app) usersUsageCmd() *cobra.Command {
	var rf rangeFlags
	cmd := &cobra.Command{
		Use:     "usage NAME",
		Short:   "A user's traffic history, with a sparkline (from the health service)",
		Example: "  vpn users usage alice\n  vpn users usage alice --from 7d --step 1h",
		Args:    args(1, "one user name or id"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			q, err := rf.query(a.env.Now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var r event.UsageReply
			if err := c.Get(cmd.Context(), userPath(argv[0], "usage"), q, &r); err != nil {
				return err
			}
			p := a.printer()
			if p.Structured() {
				return p.Value(r)
			}
			var up, down int64
			totals := make([]int64, len(r.Points))
			rows := make([][]string, len(r.Points))
			for i, pt := range r.Points {
				up, down = up+pt.Uplink, down+pt.Downlink
				totals[i] = pt.Uplink + pt.Downlink
				rows[i] = []string{pt.Start.UTC().Format("01-02 15:04"), output.Bytes(pt.Uplink), output.Bytes(pt.Downlink)}
			}
			p.Line("%s: up %s, down %s between %s and %s", argv[0], output.Bytes(up), output.Bytes(down),
				r.From.UTC().Format("2006-01-02 15:04"), r.To.UTC().Format("2006-01-02 15:04"))
			if len(r.Points) == 0 {
				return nil
			}
			p.Line("traffic %s  (step %s)", sparkline(totals), r.Step)
			return p.Table([]string{"START", "UP", "DOWN"}, rows)
		},
	}
	rf.register(cmd)
	return cmd
}

func (a *app) alertsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Aliases: []string{"alert"}, Short: "List and acknowledge alerts (from the health service)",
		Example: "  vpn alerts list\n  vpn alerts ack 3fa2b1c4 --comment 'rebooting fra-1'"}
	var status, severity, nodeID string
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List alerts, most recent first (firing by default)",
		Example: "  vpn alerts list\n  vpn alerts list --status all --severity critical --node fra-1",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"status": status, "severity": severity, "node": nodeID} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var r event.AlertsReply
			if err := c.Get(cmd.Context(), "/api/v1/alerts", q, &r); err != nil {
				return err
			}
			return printList(a, r.Alerts, func(al event.Alert) string { return al.Fingerprint },
				[]string{"ID", "RULE", "SEVERITY", "STATUS", "SUMMARY", "SINCE", "ACKED BY"},
				func(al event.Alert, now time.Time) []string {
					acked := "-"
					if al.AckedBy != "" {
						acked = al.AckedBy
					}
					return []string{al.Fingerprint, al.Rule, al.Severity, al.Status, al.Summary, output.Age(now, al.StartsAt), acked}
				})
		},
	}
	list.Flags().StringVar(&status, "status", "", "firing (default), resolved or all")
	list.Flags().StringVar(&severity, "severity", "", "critical, warning or info")
	list.Flags().StringVar(&nodeID, "node", "", "only alerts about this node")
	var comment string
	ack := &cobra.Command{
		Use:   "ack ID",
		Short: "Acknowledge an alert (until it fires again)",
		Long: `Acknowledge an alert until it fires again.

ID is the alert's id or, as git takes commits, any prefix of it of at least
` + strconv.Itoa(minAlertPrefix) + ` characters that no other alert's id starts with (a narrow
'vpn alerts list' cuts ids short).`,
		Example: "  vpn alerts ack 3fa2b1c4\n  vpn alerts ack 3fa2b1c4d5e6f708192a3b4c5d6e7f80 --comment 'rebooting fra-1'",
		Args:    args(1, "one alert id (see `vpn alerts list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			id, err := alertID(cmd.Context(), c, argv[0])
			if err != nil {
				return err
			}
			var al event.Alert
			req := client.Request{Method: http.MethodPost, Path: "/api/v1/alerts/" + url.PathEscape(id) + "/ack", Body: map[string]string{"comment": comment}}
			if err := c.Do(cmd.Context(), req, &al); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(al)
			}
			a.done("alert %s (%s) acknowledged by %s", al.Fingerprint, al.Rule, al.AckedBy)
			return nil
		},
	}
	ack.Flags().StringVar(&comment, "comment", "", "why, for the others")
	cmd.AddCommand(list, ack)
	return cmd
}

// minAlertPrefix is the shortest alert id prefix ack takes, as git's
// shortest commit abbreviation.
const minAlertPrefix = 4

// alertID resolves an alert id given whole or as a prefix that only one
// alert's id starts with (a trailing "…", as a cut table cell ends, is
// dropped). An id no alert starts with goes to the gateway as given, which
// says it does not exist.
func alertID(ctx context.Context, c *client.Client, given string) (string, error) {
	prefix := strings.TrimSuffix(given, "…")
	var r event.AlertsReply
	if err := c.Get(ctx, "/api/v1/alerts", url.Values{"status": {"all"}}, &r); err != nil {
		return "", err
	}
	var matches []string
	for _, al := range r.Alerts {
		switch {
		case al.Fingerprint == prefix:
			return prefix, nil
		case strings.HasPrefix(al.Fingerprint, prefix) && !slices.Contains(matches, al.Fingerprint):
			matches = append(matches, al.Fingerprint)
		}
	}
	switch {
	case len(matches) == 0:
		return prefix, nil
	case len(prefix) < minAlertPrefix:
		return "", usagef("alert id %q is too short: give at least %d characters of it", given, minAlertPrefix)
	case len(matches) > 1:
		return "", usagef("alert id %q is ambiguous: %s start with it; give more characters", given, strings.Join(matches, ", "))
	}
	return matches[0], nil
}
