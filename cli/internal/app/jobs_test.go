package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
	"github.com/vpnfleet/vpnfleet/shared/job"
)

// writeCSV writes a CSV import of n users named prefix-<i>, plus extra
// rows, and returns its path.
func writeCSV(t *testing.T, prefix string, n int, extra ...string) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("name,email\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%05d,%s%d@example.com\n", prefix, i, prefix, i)
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	path := filepath.Join(t.TempDir(), prefix+".csv")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var jobIDRE = regexp.MustCompile(`\bjob ([A-Za-z0-9]{22})\b`)

// jobIDs finds the job ids printed in out, in order.
func jobIDs(out string) []string {
	var ids []string
	for _, m := range jobIDRE.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// maskJobs replaces job ids with same-length placeholders and the run
// time of finished jobs, for golden files.
func maskJobs(out string, ids ...string) string {
	for i, id := range ids {
		out = strings.ReplaceAll(out, id, fmt.Sprintf("job%019d", i+1))
	}
	return regexp.MustCompile(`(?m)^Took( +).*$`).ReplaceAllString(out, "Took${1}X")
}

// TestImportAndBulkCommands imports with the CLI (dry run, refused file,
// skip-invalid, JSON and quiet output, a seed-rust directory), changes
// users by filter, rolls back, and checks tables against golden files.
func TestImportAndBulkCommands(t *testing.T) {
	h := newHarness(t)
	h.login()
	h.must("users", "create", "taken")
	file := writeCSV(t, "imp", 30, "x,not-an-email", "Taken,")

	// Dry run: the problems as a table, exit 1 (not a usage error).
	r := h.run("users", "import", file, "--dry-run")
	var ue *app.UsageError
	if r.err == nil || errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), "2 of 32 records are invalid") {
		t.Fatalf("dry run: %v", r.err)
	}
	golden(t, "users_import_dry_run", r.stdout)

	// The same file for real: refused whole, each problem named.
	r = h.run("users", "import", file)
	if r.err == nil || !strings.Contains(r.err.Error(), "line 32: name") || !strings.Contains(r.err.Error(), "skip_invalid") {
		t.Fatalf("invalid import: %v", r.err)
	}

	// With --skip-invalid, progress as plain lines (stdout is no terminal).
	r = h.must("users", "import", file, "--skip-invalid")
	ids := jobIDs(r.stdout)
	if len(ids) == 0 || !strings.Contains(r.stdout, "completed: 30 done, 0 failed, 2 skipped of 32") || !strings.Contains(r.stdout, "/32 (") {
		t.Fatalf("import: %q %q", r.stdout, r.stderr)
	}
	imp := ids[0]

	// JSON output is the final record; -q --detach only the id.
	r = h.must("users", "import", writeCSV(t, "js", 5), "-o", "json")
	var rec job.Job
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.State != job.StateCompleted || rec.Done != 5 {
		t.Fatalf("json import (%v): %s", err, r.stdout)
	}
	r = h.must("users", "import", writeCSV(t, "q", 3), "-q", "--detach")
	quiet := strings.TrimSpace(r.stdout)
	if len(quiet) != 22 || r.stderr != "" {
		t.Fatalf("quiet import: %q %q", r.stdout, r.stderr)
	}
	h.must("jobs", "watch", quiet, "-q")

	// A seed-rust users/ directory is packed by the CLI.
	r = h.run("users", "import", "../../../services/users/internal/importer/testdata/seed-rust/users", "--dry-run")
	if !strings.Contains(r.stdout, "dry run: 2 records in seed-rust") {
		t.Fatalf("seed-rust dry run: %v %q", r.err, r.stdout)
	}

	golden(t, "jobs_list", maskJobs(h.must("jobs", "list").stdout, quiet, rec.ID, imp))
	golden(t, "jobs_show", maskJobs(h.must("jobs", "show", imp).stdout, imp))

	// Changes by filter, their dry run, and a rollback.
	if r := h.must("users", "bulk", "disable", "--filter", "name-prefix=imp-", "--dry-run"); r.stdout != "dry run: 30 users, all valid; nothing was applied\n" {
		t.Fatalf("bulk dry run: %q", r.stdout)
	}
	r = h.must("users", "bulk", "disable", "--filter", "name-prefix=imp-,status=active")
	if !strings.Contains(r.stdout, "completed: 30 done, 0 failed, 0 skipped of 30") {
		t.Fatalf("bulk disable: %q", r.stdout)
	}
	dis := jobIDs(r.stdout)[0]
	if got := strings.Count(h.must("users", "list", "--status", "disabled", "-q").stdout, "\n"); got != 30 {
		t.Fatalf("%d disabled users, want 30", got)
	}
	r = h.must("users", "bulk", "extend", "--by", "30d", "--filter", "name-prefix=imp-", "--dry-run")
	r = h.must("jobs", "rollback", dis)
	if !strings.Contains(r.stdout, "completed: 30 done") {
		t.Fatalf("rollback: %q %q", r.stdout, r.stderr)
	}
	if got := h.must("users", "list", "--status", "disabled", "-q").stdout; got != "" {
		t.Fatalf("disabled after rollback: %q", got)
	}
	if r := h.must("jobs", "show", dis); !strings.Contains(r.stdout, "Rolled back by") {
		t.Fatalf("show after rollback: %s", r.stdout)
	}

	// Refusals say what to do; bad command lines are usage errors.
	cases := []struct {
		args  []string
		want  []string
		usage bool
	}{
		{[]string{"users", "bulk", "disable"}, []string{"--filter is required"}, true},
		{[]string{"users", "bulk", "disable", "--filter", "color=red"}, []string{"unknown condition \"color\""}, true},
		{[]string{"users", "bulk", "extend", "--filter", "status=active"}, []string{"needs --by"}, true},
		{[]string{"users", "bulk", "set-limit", "--filter", "status=active"}, []string{"needs --limit"}, true},
		{[]string{"users", "import", file, "--format", "xml"}, []string{"--format must be"}, true},
		{[]string{"users", "import", file, "--policy", "panic"}, []string{"--policy must be"}, true},
		{[]string{"users", "import", filepath.Join(t.TempDir(), "none.csv")}, []string{"no such file"}, false},
		{[]string{"users", "bulk", "disable", "--filter", "name-prefix=nobody"}, []string{"the filter selects no user", "hint:"}, false},
		{[]string{"users", "bulk", "disable", "--filter", "status=sleepy"}, []string{"filter.status", "hint:"}, false},
		{[]string{"jobs", "show", "nosuchjob"}, []string{"no job nosuchjob", "vpn jobs list"}, false},
		{[]string{"jobs", "pause", imp}, []string{"cannot become paused", "hint:"}, false},
	}
	for _, c := range cases {
		r := h.run(c.args...)
		if r.err == nil {
			t.Errorf("vpn %v succeeded", c.args)
			continue
		}
		if errors.As(r.err, &ue) != c.usage {
			t.Errorf("vpn %v: usage error %v, want %v (%v)", c.args, !c.usage, c.usage, r.err)
		}
		for _, w := range c.want {
			if !strings.Contains(r.err.Error(), w) {
				t.Errorf("vpn %v: %q lacks %q", c.args, r.err, w)
			}
		}
	}
}

// cancelOnWrite is stdout that ends the command's context at its first
// write, as Ctrl-C during the first progress line would.
type cancelOnWrite struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (w *cancelOnWrite) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel()
	return w.buf.Write(p)
}

// TestImportProgressAndDetach shows the live bar on a terminal, and
// Ctrl-C during a watch: the CLI detaches, says how to reattach, and the
// job goes on to the end, which `vpn jobs watch` then shows.
func TestImportProgressAndDetach(t *testing.T) {
	h := newHarness(t)
	h.login()
	r := h.runWith(app.Env{Terminal: true}, "users", "import", writeCSV(t, "bar", 200))
	if r.err != nil || !strings.Contains(r.stdout, "100%") || !strings.Contains(r.stdout, "200/200") || !strings.Contains(r.stdout, "records/s") {
		t.Fatalf("bar: %v %q", r.err, r.stdout)
	}

	file := writeCSV(t, "big", 5_000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := &cancelOnWrite{cancel: cancel}
	var errb bytes.Buffer
	err := app.Execute(ctx, []string{"users", "import", file}, app.Env{
		Getenv: func(k string) string { return h.env[k] }, Stdin: strings.NewReader(""), Stdout: out, Stderr: &errb,
	})
	if err != nil {
		t.Fatalf("detached import: %v", err)
	}
	ids := jobIDs(errb.String())
	if len(ids) == 0 || !strings.Contains(errb.String(), "detached: job "+ids[0]+" goes on; reattach with `vpn jobs watch "+ids[0]+"`") {
		t.Fatalf("no detach message: %q", errb.String())
	}
	r = h.must("jobs", "watch", ids[0])
	if !strings.Contains(r.stdout, "completed: 5000 done, 0 failed, 0 skipped of 5000") {
		t.Fatalf("reattached watch: %q", r.stdout)
	}
}
