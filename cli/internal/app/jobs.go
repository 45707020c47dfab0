package app

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func jobPath(id string, rest ...string) string {
	p := "/api/v1/jobs/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// jobRun are the flags every command that starts a job shares.
type jobRun struct {
	dryRun bool
	policy string
	detach bool
	key    string
}

func (jr *jobRun) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&jr.dryRun, "dry-run", false, "validate only: print the report, change nothing")
	f.StringVar(&jr.policy, "policy", "continue", "what a failed item does: continue (collect failures) or stop (end the job)")
	f.BoolVar(&jr.detach, "detach", false, "print the job id and return at once (watch it with 'vpn jobs watch ID')")
	f.StringVar(&jr.key, "idempotency-key", "", "makes a retried start return the job the first attempt started")
}

func (jr *jobRun) check() error {
	if jr.policy != string(job.PolicyContinue) && jr.policy != string(job.PolicyStop) {
		return usagef("--policy must be continue or stop, not %q", jr.policy)
	}
	return nil
}

func (a *app) usersImportCmd() *cobra.Command {
	var jr jobRun
	var format string
	var skipInvalid bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import users from a file as a bulk job (CSV, JSON, seed-rust, Marzban)",
		Long: `Import users from FILE as a durable bulk job, with live progress.

FILE is a CSV file (a header row naming the columns), this product's JSON
export (vpn users list -o json), Marzban's GET /api/users body, or the Rust
predecessor's users/ directory (tarred here) or a tar(.gz) of it; "-" reads
stdin. The whole file is validated first: with problems nothing is applied
(--dry-run prints them as a table; --skip-invalid applies the valid records).

CSV columns: a header row names them, in any order and any case; only name
is required, and an empty cell leaves its field unset. Lists take ";" or "|"
between items.
  name                 3-32 characters of A-Z a-z 0-9 _ -
  email                contact address
  note                 free text
  status               active (default), disabled, limited, expired or on_hold
  protocols            vless-reality;shadowsocks-2022;socks5;http (default: all)
  traffic_limit_bytes  whole bytes; 0 is unlimited
  limit_reset          none, day, week, month or year
  expires_at           RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)
  on_hold_days         with status on_hold: days of validity from first use
  nodes                serve only on these nodes (default: every node)
  groups               serve on the nodes of these groups
  id                   the user's id (a UUIDv4); generated when absent
  vless_uuid, shadowsocks_method, shadowsocks_key, socks5_password,
  http_password        credentials to keep, so existing links go on working;
                       generated when absent
For example:
  name,email,traffic_limit_bytes,expires_at,protocols
  alice,alice@example.com,53687091200,2026-12-31,vless-reality;shadowsocks-2022

Ctrl-C stops watching, not the job: reattach with 'vpn jobs watch ID'.`,
		Example: "  vpn users import users.csv --dry-run\n  vpn users import /opt/vpn/users --format seed-rust\n  vpn users import marzban.json --skip-invalid",
		Args:    args(1, "one file or directory"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if err := jr.check(); err != nil {
				return err
			}
			if format != "auto" && !slices.Contains(job.Formats, job.Format(format)) {
				return usagef("--format must be csv, json, seed-rust, marzban or auto, not %q", format)
			}
			data, name, err := a.readImport(argv[0])
			if err != nil {
				return err
			}
			body, ct, err := importForm(data, name, format, jr, skipInvalid)
			if err != nil {
				return err
			}
			return a.startJob(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/jobs", Raw: body, ContentType: ct}, jr)
		},
	}
	jr.register(cmd)
	cmd.Flags().StringVar(&format, "format", "auto", "csv, json, seed-rust, marzban or auto (detected from the data)")
	cmd.Flags().BoolVar(&skipInvalid, "skip-invalid", false, "apply the valid records and skip the rest")
	return cmd
}

// readImport reads FILE, "-" (stdin) or a directory, which it packs as a
// gzipped tar of its */config.json files named from the directory's parent
// (users/<uuid>/config.json), the way the Rust predecessor kept them.
func (a *app) readImport(path string) ([]byte, string, error) {
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(a.env.Stdin, subject.JobInputsMaxBytes+1))
		return data, "stdin", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", path, err)
	}
	if !fi.IsDir() {
		// The gateway's --max-import-bytes is the real limit (it answers
		// 413 naming it); nothing larger than the job inputs store fits.
		if fi.Size() > subject.JobInputsMaxBytes {
			return nil, "", fmt.Errorf("%s is %d bytes, over the %d MiB the job inputs store holds\nhint: split it into parts and import each", path, fi.Size(), subject.JobInputsMaxBytes>>20)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, "", fmt.Errorf("reading %s: %w", path, err)
		}
		return data, filepath.Base(path), nil
	}
	data, n, err := tarUsers(path)
	if err != nil {
		return nil, "", err
	}
	if n == 0 {
		return nil, "", fmt.Errorf("%s holds no <uuid>/config.json\nhint: give the Rust tool's users directory (by default /opt/vpn/users)", path)
	}
	a.info("packed %d user directories of %s", n, path)
	return data, filepath.Base(path) + ".tar.gz", nil
}

func tarUsers(dir string) ([]byte, int, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	base := filepath.Dir(filepath.Clean(dir))
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || d.Name() != "config.json" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(base, p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		n++
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = errors.Join(tw.Close(), zw.Close())
	}
	if err != nil {
		return nil, 0, fmt.Errorf("packing %s: %w", dir, err)
	}
	return buf.Bytes(), n, nil
}

// importForm is the multipart body of an import: the file and the fields.
func importForm(data []byte, name, format string, jr jobRun, skipInvalid bool) ([]byte, string, error) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	fields := [][2]string{{"kind", string(job.KindImport)}, {"format", format}, {"policy", jr.policy},
		{"dry_run", strconv.FormatBool(jr.dryRun)}, {"skip_invalid", strconv.FormatBool(skipInvalid)}}
	if jr.key != "" {
		fields = append(fields, [2]string{"idempotency_key", jr.key})
	}
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			return nil, "", err
		}
	}
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		return nil, "", err
	}
	if _, err := fw.Write(data); err != nil {
		return nil, "", err
	}
	if err := mw.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), mw.FormDataContentType(), nil
}

// bulkKinds are the changes by filter, as the CLI names them.
var bulkKinds = []struct {
	use     string
	kind    job.Kind
	short   string
	example string // arguments after "vpn users bulk <use>"
}{
	{"disable", job.KindDisable, "Switch off every user the filter selects", "--filter name-prefix=trial-"},
	{"enable", job.KindEnable, "Switch on every user the filter selects", "--filter status=disabled,name-prefix=team-"},
	{"delete", job.KindDelete, "Delete every user the filter selects (a rollback brings them back with the same links)", "--filter status=expired --dry-run"},
	{"extend", job.KindExtend, "Move the expiry of every selected user by --by (users that never expire are skipped)", "--by 30d --filter status=active,expires-before=7d"},
	{"set-expiry", job.KindSetExpiry, "Set the expiry of every selected user to --expires", "--expires 2027-01-01 --filter name-prefix=team-"},
	{"set-limit", job.KindSetLimit, "Set the traffic limit of every selected user to --limit", "--limit 100GiB --filter usage-above=40GiB"},
	{"reset-traffic", job.KindResetTraffic, "Restart the traffic counters of every selected user", "--filter status=limited"},
	{"rotate", job.KindRotate, "Replace the credentials of every selected user (old links stop working)", "--protocol vless-reality --filter node=fra-1"},
	{"move", job.KindMove, "Serve every selected user on the nodes of --node only", "--node fra-2,fra-3 --filter node=fra-1"},
}

func (a *app) usersBulkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bulk",
		Short: "Change every user a filter selects, as one durable job",
		Long: `Change every user a filter selects, as one durable bulk job with live
progress, that 'vpn jobs rollback ID' undoes.

--filter takes comma-separated conditions, all of which must hold:
  status=active|disabled|limited|expired|on_hold   protocol=vless-reality|...
  node=NODE   name-prefix=PREFIX   expires-before=DATE|30d   usage-above=10GiB`,
		Example: "  vpn users bulk disable --filter name-prefix=trial-\n  vpn users bulk extend --by 30d --filter status=active,expires-before=7d --dry-run",
	}
	for _, k := range bulkKinds {
		cmd.AddCommand(a.bulkKindCmd(k.use, k.kind, k.short, k.example))
	}
	return cmd
}

func (a *app) bulkKindCmd(use string, kind job.Kind, short, example string) *cobra.Command {
	var jr jobRun
	var filter, protocols, nodes []string
	var by, expires, limit string
	cmd := &cobra.Command{
		Use:     use + " --filter COND[,COND...]",
		Short:   short,
		Example: "  vpn users bulk " + use + " " + example,
		Args:    args(0, "no arguments (the users come from --filter)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := jr.check(); err != nil {
				return err
			}
			f, err := parseFilter(filter, a.env.Now())
			if err != nil {
				return err
			}
			req := job.CreateRequest{Kind: kind, Filter: &f, DryRun: jr.dryRun, Policy: job.Policy(jr.policy), IdempotencyKey: jr.key}
			switch kind {
			case job.KindExtend:
				if by == "" {
					return usagef("extend needs --by, e.g. --by 30d")
				}
				req.ExtendBy = by
			case job.KindSetExpiry:
				if req.ExpiresAt, err = parseExpiry(expires, a.env.Now()); err != nil || req.ExpiresAt.IsZero() {
					return usagef("set-expiry needs --expires: a date (2026-12-31), an RFC 3339 time or a duration from now (30d)")
				}
			case job.KindSetLimit:
				if !cmd.Flags().Changed("limit") {
					return usagef("set-limit needs --limit, e.g. --limit 50GiB (0 for unlimited)")
				}
				n, err := parseBytes(limit)
				if err != nil {
					return usagef("--limit: %v", err)
				}
				req.TrafficLimitBytes = &n
			case job.KindRotate:
				for _, p := range protocols {
					req.Protocols = append(req.Protocols, user.Protocol(p))
				}
			case job.KindMove:
				if len(nodes) == 0 {
					return usagef("move needs --node, e.g. --node fra-1,fra-2")
				}
				req.Nodes = nodes
			}
			return a.startJob(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/api/v1/jobs", Body: req}, jr)
		},
	}
	jr.register(cmd)
	cmd.Flags().StringSliceVar(&filter, "filter", nil, "conditions the users must meet (required): status=,protocol=,node=,name-prefix=,expires-before=,usage-above=")
	switch kind {
	case job.KindExtend:
		cmd.Flags().StringVar(&by, "by", "", "how far to move each expiry: days (30d) or a duration (720h)")
	case job.KindSetExpiry:
		cmd.Flags().StringVar(&expires, "expires", "", "the new expiry: a date, an RFC 3339 time or a duration from now (30d)")
	case job.KindSetLimit:
		cmd.Flags().StringVar(&limit, "limit", "", "the new traffic limit, e.g. 50GiB (0: unlimited)")
	case job.KindRotate:
		cmd.Flags().StringSliceVar(&protocols, "protocol", nil, "renew only these protocols (default: all)")
	case job.KindMove:
		cmd.Flags().StringSliceVar(&nodes, "node", nil, "the nodes to serve the users on")
	}
	return cmd
}

// parseFilter reads --filter conditions.
func parseFilter(conds []string, now time.Time) (job.Filter, error) {
	var f job.Filter
	if len(conds) == 0 {
		return f, usagef("--filter is required: e.g. --filter status=active,name-prefix=eu- (see `vpn users bulk --help`)")
	}
	for _, c := range conds {
		k, v, ok := strings.Cut(strings.TrimSpace(c), "=")
		if !ok || v == "" {
			return f, usagef("--filter %q: each condition is key=value", c)
		}
		switch k {
		case "status":
			f.Status = user.Status(v)
		case "protocol":
			f.Protocol = user.Protocol(v)
		case "node":
			f.Node = v
		case "name-prefix", "name_prefix", "prefix":
			f.NamePrefix = v
		case "expires-before", "expires_before":
			t, err := parseExpiry(v, now)
			if err != nil {
				return f, usagef("--filter expires-before: %v", err)
			}
			f.ExpiresBefore = t
		case "usage-above", "usage_above":
			n, err := parseBytes(v)
			if err != nil {
				return f, usagef("--filter usage-above: %v", err)
			}
			f.UsageAbove = n
		default:
			return f, usagef("--filter: unknown condition %q (status, protocol, node, name-prefix, expires-before, usage-above)", k)
		}
	}
	return f, nil
}

// startJob sends a create request and, unless it was a dry run or
// --detach, watches the job to its end.
func (a *app) startJob(ctx context.Context, req client.Request, jr jobRun) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	if jr.key != "" && req.Body != nil {
		req.Header = http.Header{"Idempotency-Key": {jr.key}}
	}
	var resp job.CreateResponse
	if err := c.Do(ctx, req, &resp); err != nil {
		return err
	}
	if resp.Job == nil {
		return a.printReport(resp.Report)
	}
	p := a.printer()
	id := resp.Job.ID
	if a.quiet {
		p.Line("%s", id)
	}
	if jr.detach {
		switch {
		case p.Structured():
			return p.Value(resp.Job)
		case !a.quiet:
			a.done("job %s started: %s of %d %s; watch it with `vpn jobs watch %s`", id, resp.Job.Kind, resp.Job.Total, itemsOf(resp.Job.Kind), id)
		}
		return nil
	}
	if !a.quiet && !p.Structured() {
		a.info("job %s started: %s of %d %s (Ctrl-C stops watching, not the job)", id, resp.Job.Kind, resp.Job.Total, itemsOf(resp.Job.Kind))
	}
	return a.follow(ctx, c, id)
}

func itemsOf(k job.Kind) string {
	if k == job.KindImport || k == job.KindGenerate {
		return "records"
	}
	return "users"
}

// printReport prints a dry run's report: the counts, then every problem
// as a table (record or line, name, field, rule). Problems make it exit 1.
func (a *app) printReport(r job.Report) error {
	p := a.printer()
	switch {
	case p.Structured():
		if err := p.Value(r); err != nil {
			return err
		}
	case !a.quiet:
		what := fmt.Sprintf("dry run: %d %s", r.Records, itemsOf(r.Kind))
		if r.Format != "" {
			what += " in " + string(r.Format)
		}
		if r.Invalid == 0 {
			p.Line("%s, all valid; nothing was applied", what)
		} else {
			p.Line("%s, %d valid, %d invalid; nothing was applied", what, r.Valid, r.Invalid)
		}
		if len(r.Problems) > 0 {
			p.Line("")
			if err := p.Table([]string{"WHERE", "NAME", "FIELD", "RULE"}, problemRows(r.Problems)); err != nil {
				return err
			}
		}
		if len(r.Warnings) > 0 {
			p.Line("\nwarnings (the records are imported):")
			if err := p.Table([]string{"WHERE", "NAME", "FIELD", "NOTE"}, problemRows(r.Warnings)); err != nil {
				return err
			}
		}
	}
	if r.Invalid > 0 {
		return fmt.Errorf("%d of %d records are invalid\nhint: fix them and run again, or import with --skip-invalid to apply only the valid ones", r.Invalid, r.Records)
	}
	return nil
}

func problemRows(ps []job.Problem) [][]string {
	rows := make([][]string, len(ps))
	for i, q := range ps {
		rows[i] = []string{q.Where(), orDash(q.Name), q.Field, q.Rule}
	}
	return rows
}

// follow watches job id to its end with a progress view, then prints the
// outcome. Ctrl-C (ctx ending) detaches and says how to reattach.
func (a *app) follow(ctx context.Context, c *client.Client, id string) error {
	p := a.printer()
	var view progressView = silentView{}
	switch {
	case a.quiet || p.Structured():
	case a.env.Terminal:
		view = &barView{w: a.env.Stdout}
	default:
		view = &lineView{w: a.env.Stdout}
	}
	rec, err := watchJob(ctx, c, id, view.update)
	view.finish()
	if ctx.Err() != nil {
		fmt.Fprintf(a.env.Stderr, "detached: job %s goes on; reattach with `vpn jobs watch %s`\n", id, id)
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case p.Structured():
		if err := p.Value(rec); err != nil {
			return err
		}
	case !a.quiet:
		p.Line("%s", outcomeLine(rec))
		if len(rec.Failures) > 0 {
			if err := p.Table([]string{"ITEM", "NAME", "REASON"}, failureRows(rec.Failures)); err != nil {
				return err
			}
		}
	}
	return outcomeErr(rec)
}

func outcomeLine(rec job.Job) string {
	return fmt.Sprintf("job %s %s: %d done, %d failed, %d skipped of %d", rec.ID, rec.State, rec.Done, rec.Failed, rec.Skipped, rec.Total)
}

// outcomeErr makes a job that did not fully succeed exit 1.
func outcomeErr(rec job.Job) error {
	switch {
	case rec.State == job.StateFailed || rec.State == job.StateCancelled:
		return fmt.Errorf("job %s %s: %d of %d applied\nhint: `vpn jobs show %s` lists failures; `vpn jobs rollback %s` undoes what it applied", rec.ID, rec.State, rec.Done, rec.Total, rec.ID, rec.ID)
	case rec.Failed > 0:
		return fmt.Errorf("job %s: %d items failed\nhint: `vpn jobs show %s` lists them", rec.ID, rec.Failed, rec.ID)
	}
	return nil
}

func failureRows(fs []job.Failure) [][]string {
	rows := make([][]string, len(fs))
	for i, f := range fs {
		rows[i] = []string{strconv.Itoa(f.Item), orDash(f.Name), f.Reason}
	}
	return rows
}

// watchJob reads a job's event stream until the job is final and passes
// each state to update. A broken stream is resumed where it stopped.
func watchJob(ctx context.Context, c *client.Client, id string, update func(job.Job)) (job.Job, error) {
	var last job.Job
	lastID := ""
	for attempt := 0; ; attempt++ {
		err := c.Stream(ctx, jobPath(id, "events"), nil, lastID, func(e client.Event) bool {
			lastID = e.ID
			var env event.Envelope
			var je job.Event
			if json.Unmarshal([]byte(e.Data), &env) != nil || env.Decode(&je) != nil {
				return true
			}
			last = je.Job
			update(last)
			return !last.State.Final()
		})
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if last.State.Final() {
			return last, nil
		}
		var api *client.APIError
		if errors.As(err, &api) {
			return last, err
		}
		// The stream ended or broke before the end: the record says.
		var rec job.Job
		if gerr := c.Get(ctx, jobPath(id), nil, &rec); gerr == nil && rec.State.Final() {
			update(rec)
			return rec, nil
		}
		if attempt >= 20 {
			return last, fmt.Errorf("lost the event stream of job %s: %v\nhint: `vpn jobs watch %s` tries again", id, err, id)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// progressView shows a job's progress while it runs.
type progressView interface {
	update(job.Job)
	finish()
}

type silentView struct{}

func (silentView) update(job.Job) {}
func (silentView) finish()        {}

// barView is a live bar with rate and ETA, for terminals.
type barView struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

func (v *barView) update(rec job.Job) {
	if v.bar == nil {
		v.bar = progressbar.NewOptions64(int64(max(rec.Total, 1)),
			progressbar.OptionSetWriter(v.w), progressbar.OptionSetWidth(30),
			progressbar.OptionSetDescription(string(rec.Kind)), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString(itemsOf(rec.Kind)),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetRenderBlankState(true), progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(v.w) }))
	}
	if rec.Failed > 0 {
		v.bar.Describe(fmt.Sprintf("%s (%d failed)", rec.Kind, rec.Failed))
	}
	_ = v.bar.Set64(int64(rec.Processed()))
}

func (v *barView) finish() {
	if v.bar != nil && !v.bar.IsFinished() {
		_ = v.bar.Exit() // prints the final newline
	}
}

// lineView prints a plain progress line at most every second, for logs
// and pipes.
type lineView struct {
	w    io.Writer
	last time.Time
	seen int
}

func (v *lineView) update(rec job.Job) {
	final := rec.State.Final()
	if !final && time.Since(v.last) < time.Second || final && rec.Processed() == v.seen {
		return
	}
	v.last, v.seen = time.Now(), rec.Processed()
	pct := 100
	if rec.Total > 0 {
		pct = rec.Processed() * 100 / rec.Total
	}
	eta := "-"
	if rec.ETASeconds > 0 {
		eta = (time.Duration(rec.ETASeconds*float64(time.Second)) + time.Second/2).Truncate(time.Second).String()
	}
	fmt.Fprintf(v.w, "job %s %s: %d/%d (%d%%), %d failed, %d skipped, %.0f %s/s, ETA %s\n",
		rec.ID, rec.State, rec.Processed(), rec.Total, pct, rec.Failed, rec.Skipped, rec.Rate, itemsOf(rec.Kind), eta)
}

func (v *lineView) finish() {}

func (a *app) jobsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "jobs", Aliases: []string{"job"}, Short: "List, watch and control bulk jobs (imports, changes by filter)",
		Example: "  vpn jobs list --state running\n  vpn jobs watch 3XbcQ1zq8kZrL0YfE7pD2a\n  vpn jobs rollback 3XbcQ1zq8kZrL0YfE7pD2a"}
	var state string
	var limit int
	list := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List bulk jobs, newest first",
		Example: "  vpn jobs list\n  vpn jobs list --state failed -o json",
		Args:    args(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			if state != "" {
				q.Set("state", state)
			}
			var resp job.ListResponse
			if err := c.Get(cmd.Context(), "/api/v1/jobs", q, &resp); err != nil {
				return err
			}
			return printList(a, resp.Jobs, func(j job.Job) string { return j.ID },
				[]string{"ID", "KIND", "STATE", "PROGRESS", "DONE", "FAILED", "SKIPPED", "AGE"},
				func(j job.Job, now time.Time) []string {
					return []string{j.ID, string(j.Kind), string(j.State), fmt.Sprintf("%d/%d", j.Processed(), j.Total),
						strconv.Itoa(j.Done), strconv.Itoa(j.Failed), strconv.Itoa(j.Skipped), output.Age(now, j.CreatedAt)}
				})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only jobs in this state: running, paused, completed, failed, cancelled")
	list.Flags().IntVar(&limit, "limit", 50, "at most this many (1-500)")

	show := &cobra.Command{
		Use:     "show ID",
		Aliases: []string{"get"},
		Short:   "Show a job: state, counters, rate, ETA and failures",
		Example: "  vpn jobs show 3XbcQ1zq8kZrL0YfE7pD2a",
		Args:    args(1, "one job id (see `vpn jobs list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var rec job.Job
			if err := c.Get(cmd.Context(), jobPath(argv[0]), nil, &rec); err != nil {
				return err
			}
			return a.printJob(rec)
		},
	}
	watch := &cobra.Command{
		Use:     "watch ID",
		Short:   "Follow a job's progress to its end (Ctrl-C stops watching, not the job)",
		Example: "  vpn jobs watch 3XbcQ1zq8kZrL0YfE7pD2a",
		Args:    args(1, "one job id (see `vpn jobs list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			return a.follow(cmd.Context(), c, argv[0])
		},
	}
	var detach bool
	rollback := &cobra.Command{
		Use:     "rollback ID",
		Short:   "Undo a finished job with a compensating job (created users deleted, changed and deleted users restored)",
		Example: "  vpn jobs rollback 3XbcQ1zq8kZrL0YfE7pD2a\n  vpn jobs rollback 3XbcQ1zq8kZrL0YfE7pD2a --detach",
		Args:    args(1, "one job id (see `vpn jobs list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var rb job.Job
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: jobPath(argv[0], "rollback")}, &rb); err != nil {
				return err
			}
			p := a.printer()
			if a.quiet {
				p.Line("%s", rb.ID)
			}
			if detach {
				if p.Structured() {
					return p.Value(rb)
				}
				if !a.quiet {
					a.done("rollback job %s of job %s started; watch it with `vpn jobs watch %s`", rb.ID, argv[0], rb.ID)
				}
				return nil
			}
			if !a.quiet && !p.Structured() {
				a.info("rollback job %s of job %s started: %d users (Ctrl-C stops watching, not the job)", rb.ID, argv[0], rb.Total)
			}
			return a.follow(cmd.Context(), c, rb.ID)
		},
	}
	rollback.Flags().BoolVar(&detach, "detach", false, "print the rollback job's id and return at once")
	cmd.AddCommand(list, show, watch,
		a.jobControlCmd("cancel", "Stop a running or paused job; what is not applied yet is skipped"),
		a.jobControlCmd("pause", "Hold a running job until resume"),
		a.jobControlCmd("resume", "Let a paused job go on"),
		rollback)
	return cmd
}

func (a *app) jobControlCmd(action, short string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " ID",
		Short:   short,
		Example: "  vpn jobs " + action + " 3XbcQ1zq8kZrL0YfE7pD2a",
		Args:    args(1, "one job id (see `vpn jobs list`)"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			var rec job.Job
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: jobPath(argv[0], action)}, &rec); err != nil {
				return err
			}
			if a.printer().Structured() {
				return a.printer().Value(rec)
			}
			a.done("job %s: %s (%d of %d processed)", rec.ID, rec.State, rec.Processed(), rec.Total)
			return nil
		},
	}
}

func (a *app) printJob(rec job.Job) error {
	p := a.printer()
	switch {
	case p.Structured():
		return p.Value(rec)
	case a.quiet:
		p.Line("%s", rec.ID)
		return nil
	}
	pct := 100
	if rec.Total > 0 {
		pct = rec.Processed() * 100 / rec.Total
	}
	now := a.env.Now()
	pairs := [][2]string{
		{"ID", rec.ID}, {"Kind", string(rec.Kind)}, {"State", string(rec.State)},
		{"Progress", fmt.Sprintf("%d/%d (%d%%)", rec.Processed(), rec.Total, pct)},
		{"Done", strconv.Itoa(rec.Done)}, {"Failed", strconv.Itoa(rec.Failed)}, {"Skipped", strconv.Itoa(rec.Skipped)},
		{"Policy", string(rec.Policy)},
	}
	if rec.Format != "" {
		pairs = append(pairs, [2]string{"Format", string(rec.Format)})
	}
	if !rec.State.Final() {
		pairs = append(pairs, [2]string{"Rate", fmt.Sprintf("%.0f %s/s", rec.Rate, itemsOf(rec.Kind))},
			[2]string{"ETA", (time.Duration(rec.ETASeconds) * time.Second).String()})
	}
	if rec.RollbackOf != "" {
		pairs = append(pairs, [2]string{"Rollback of", rec.RollbackOf})
	}
	if rec.RolledBackBy != "" {
		pairs = append(pairs, [2]string{"Rolled back by", rec.RolledBackBy})
	}
	pairs = append(pairs, [2]string{"Created", output.Age(now, rec.CreatedAt) + " ago"})
	if !rec.FinishedAt.IsZero() {
		pairs = append(pairs, [2]string{"Took", rec.FinishedAt.Sub(rec.CreatedAt).Round(time.Millisecond).String()})
	}
	if err := p.KeyValues(pairs); err != nil {
		return err
	}
	if len(rec.Failures) > 0 {
		p.Line("")
		return p.Table([]string{"ITEM", "NAME", "REASON"}, failureRows(rec.Failures))
	}
	return nil
}
