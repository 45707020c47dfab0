package users_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// callJobs sends one request to a jobs endpoint.
func callJobs[Resp any](h *harness, endpoint string, req any) (Resp, error) {
	ctx := ctxT(h.t)
	return bus.Request[Resp](ctx, h.nc, subject.JobsCmd(endpoint), req)
}

func mustJobs[Resp any](h *harness, endpoint string, req any) Resp {
	h.t.Helper()
	resp, err := callJobs[Resp](h, endpoint, req)
	if err != nil {
		h.t.Fatalf("jobs %s: %v", endpoint, err)
	}
	return resp
}

// waitJob waits until job id is final and returns its record.
func (h *harness) waitJob(id string, within time.Duration) job.Job {
	h.t.Helper()
	var rec job.Job
	waitfor.Cond(h.t, within, func() error {
		var err error
		rec, err = callJobs[job.Job](h, subject.JobsGet, job.IDRequest{ID: id})
		if err != nil {
			return err
		}
		if !rec.State.Final() {
			return fmt.Errorf("job %s is %s: %d/%d done", id, rec.State, rec.Processed(), rec.Total)
		}
		return nil
	})
	return rec
}

// csvUsers is a CSV file of n users named prefix-<n>.
func csvUsers(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("name,email,traffic_limit_bytes,protocols\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%05d,%s%d@example.com,%d,vless-reality;shadowsocks-2022\n", prefix, i, prefix, i, 1<<30)
	}
	return b.Bytes()
}

// allUsers lists every user through the users service.
func (h *harness) allUsers() []user.User {
	h.t.Helper()
	var out []user.User
	cursor := ""
	for {
		page := must[user.ListResponse](h, subject.UsersList, user.ListRequest{Limit: 1000, Cursor: cursor})
		out = append(out, page.Users...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

func TestImportCSV(t *testing.T) {
	h := newHarness(t)
	h.start()
	const n = 2000
	start := time.Now()
	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: csvUsers("imp", n)})
	if resp.Job == nil || resp.Report.Valid != n {
		t.Fatalf("create: %+v", resp.Report)
	}
	rec := h.waitJob(resp.Job.ID, time.Minute)
	t.Logf("%d users in %s", n, time.Since(start))
	if rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 {
		t.Fatalf("job %+v", rec)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		if c := must[user.CountResponse](h, subject.UsersCount, user.Filter{NamePrefix: "imp-"}); c.Count != n {
			return fmt.Errorf("count %d", c.Count)
		}
		return nil
	})
}

// TestCorruptFileIsReportedWholeAndAppliesNothing feeds a file with bad
// rows, duplicates, a reserved name, a taken name and bad UTF-8: the dry
// run reports every problem with its line and field, the real run fails
// Invalid naming each, and nothing is applied; with skip_invalid only the
// good rows are.
func TestCorruptFileIsReportedWholeAndAppliesNothing(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.create("taken")
	waitfor.Cond(t, 5*time.Second, func() error {
		if c := must[user.CountResponse](h, subject.UsersCount, user.Filter{}); c.Count != 1 {
			return fmt.Errorf("count %d", c.Count)
		}
		return nil
	})
	data := []byte("name,email,traffic_limit_bytes,status\n" + // line 1
		"good1,g1@example.com,100,active\n" + // 2
		"good2,,,\n" + // 3
		"x,not-an-email,-5,sleeping\n" + // 4: name, email, limit, status
		"GOOD1,,,\n" + // 5: duplicate of line 2
		"admin,,,\n" + // 6: reserved
		"Taken,,,\n" + // 7: exists
		"caf\xe9,,,\n" + // 8: bad encoding
		"short,row\n") // 9: wrong field count
	want := map[string]bool{
		"line 4: name": true, "line 4: email": true, "line 4: traffic_limit_bytes": true, "line 4: status": true,
		"line 5: name": true, "line 6: name": true, "line 7: name": true, "line 8: encoding": true, "line 9: row": true,
	}
	dry := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Format: job.FormatCSV, Data: data, DryRun: true})
	if dry.Job != nil || dry.Report.Records != 8 || dry.Report.Valid != 2 || dry.Report.Invalid != 6 {
		t.Fatalf("dry run report %+v", dry.Report)
	}
	got := map[string]bool{}
	for _, p := range dry.Report.Problems {
		got[p.Where()+": "+p.Field] = true
	}
	for k := range want {
		if !got[k] {
			t.Errorf("dry run does not report %s; got %v", k, got)
		}
	}
	_, err := callJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: data})
	if !errors.Is(err, errs.Invalid) {
		t.Fatalf("create: %v, want Invalid", err)
	}
	fields := map[string]bool{}
	for _, f := range errs.FieldsOf(err) {
		fields[f.Field] = true
	}
	for k := range want {
		if !fields[k] {
			t.Errorf("error does not name %s; got %v", k, fields)
		}
	}
	if list := mustJobs[job.ListResponse](h, subject.JobsList, job.ListRequest{}); len(list.Jobs) != 0 {
		t.Fatalf("a job was created: %+v", list.Jobs)
	}
	if _, err := call[user.User](h, subject.UsersGet, user.GetRequest{Name: "good1"}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("good1 was applied: %v", err)
	}

	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: data, SkipInvalid: true})
	rec := h.waitJob(resp.Job.ID, 30*time.Second)
	if rec.State != job.StateCompleted || rec.Done != 2 || rec.Skipped != 6 || rec.Total != 8 {
		t.Fatalf("skip_invalid job %+v", rec)
	}
	must[user.User](h, subject.UsersGet, user.GetRequest{Name: "good2"})
}

func TestBadJobRequests(t *testing.T) {
	h := newHarness(t)
	h.start()
	h.create("someone")
	tests := []struct {
		name  string
		req   any
		ep    string
		class errs.Class
		want  string
	}{
		{"unknown kind", job.CreateRequest{Kind: "explode"}, subject.JobsCreate, errs.Invalid, "kind"},
		{"input not in the store", job.CreateRequest{Kind: job.KindImport, Input: &job.Input{Name: "nosuch", Digest: "SHA-256=AAAA"}}, subject.JobsCreate, errs.NotFound, ""},
		{"input and data", job.CreateRequest{Kind: job.KindImport, Data: []byte("name\nx\n"), Input: &job.Input{Name: "nosuch", Digest: "SHA-256=AAAA"}}, subject.JobsCreate, errs.Invalid, "data"},
		{"filter matching nothing", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "nobody"}}, subject.JobsCreate, errs.Invalid, "filter"},
		{"empty filter", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{}}, subject.JobsCreate, errs.Invalid, "filter"},
		{"extend without duration", job.CreateRequest{Kind: job.KindExtend, Filter: &job.Filter{NamePrefix: "some"}}, subject.JobsCreate, errs.Invalid, "extend_by"},
		{"unknown job", job.IDRequest{ID: "nosuchjob"}, subject.JobsGet, errs.NotFound, ""},
		{"cancel unknown job", job.IDRequest{ID: "nosuchjob"}, subject.JobsCancel, errs.NotFound, ""},
		{"rollback unknown job", job.IDRequest{ID: "nosuchjob"}, subject.JobsRollback, errs.NotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := callJobs[job.CreateResponse](h, tt.ep, tt.req)
			if !errors.Is(err, tt.class) {
				t.Fatalf("err %v, want %v", err, tt.class)
			}
			if tt.want != "" {
				fe := errs.FieldsOf(err)
				if len(fe) == 0 || !strings.HasPrefix(fe[0].Field, tt.want) {
					t.Fatalf("fields %+v, want %s", fe, tt.want)
				}
			}
		})
	}
	if list := mustJobs[job.ListResponse](h, subject.JobsList, job.ListRequest{}); len(list.Jobs) != 0 {
		t.Fatalf("jobs were created: %+v", list.Jobs)
	}
}

// snapshot is the registry's content that rollbacks must restore: every
// user by id, without server-kept fields.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	for _, u := range h.allUsers() {
		u.Revision, u.UpdatedAt = 0, time.Time{}
		out[u.ID] = fmt.Sprintf("%+v|%+v|%+v|%+v|%+v", u.Name, u.Status, *u.Credentials.VLESS, u.Placement, u.ExpiresAt)
	}
	return out
}

func (h *harness) waitCount(f user.Filter, n int) {
	h.t.Helper()
	waitfor.Cond(h.t, 20*time.Second, func() error {
		if c := must[user.CountResponse](h, subject.UsersCount, f); c.Count != n {
			return fmt.Errorf("count %d, want %d", c.Count, n)
		}
		return nil
	})
}

// TestRollbackImportAndBulkDelete imports, rolls back (the registry is as
// before), then deletes by filter and rolls that back: the users return
// with the same ids and credentials.
func TestRollbackImportAndBulkDelete(t *testing.T) {
	h := newHarness(t)
	h.start()
	for i := range 5 {
		h.create(fmt.Sprintf("old-%d", i))
	}
	h.waitCount(user.Filter{}, 5)
	before := h.snapshot()

	imp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: csvUsers("new", 600)})
	h.waitJob(imp.Job.ID, time.Minute)
	h.waitCount(user.Filter{}, 605)
	if _, err := callJobs[job.Job](h, subject.JobsRollback, job.IDRequest{ID: "x" + imp.Job.ID}); !errors.Is(err, errs.NotFound) {
		t.Fatalf("rollback of unknown job: %v", err)
	}
	rb := mustJobs[job.Job](h, subject.JobsRollback, job.IDRequest{ID: imp.Job.ID})
	if again := mustJobs[job.Job](h, subject.JobsRollback, job.IDRequest{ID: imp.Job.ID}); again.ID != rb.ID {
		t.Fatalf("second rollback made job %s, want %s", again.ID, rb.ID)
	}
	if rec := h.waitJob(rb.ID, time.Minute); rec.Done != 600 || rec.RollbackOf != imp.Job.ID {
		t.Fatalf("rollback %+v", rec)
	}
	h.waitCount(user.Filter{}, 5)
	if after := h.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after rollback of the import:\n%v\nwant\n%v", after, before)
	}
	// The names are free again.
	h.create("new-00001")

	del := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindDelete, Filter: &job.Filter{NamePrefix: "old-"}})
	if rec := h.waitJob(del.Job.ID, time.Minute); rec.Done != 5 {
		t.Fatalf("delete %+v", rec)
	}
	h.waitCount(user.Filter{NamePrefix: "old-"}, 0)
	rb = mustJobs[job.Job](h, subject.JobsRollback, job.IDRequest{ID: del.Job.ID})
	if rec := h.waitJob(rb.ID, time.Minute); rec.Done != 5 {
		t.Fatalf("rollback %+v", rec)
	}
	h.waitCount(user.Filter{NamePrefix: "old-"}, 5)
	after := h.snapshot()
	for id, was := range before {
		if after[id] != was {
			t.Errorf("user %s after rollback of the delete: %s, want %s", id, after[id], was)
		}
	}
}

// TestChangesByFilter disables, extends and moves by filter; a rollback
// of the extension puts the old expiry back.
func TestChangesByFilter(t *testing.T) {
	h := newHarness(t)
	h.start()
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	for i := range 30 {
		must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: fmt.Sprintf("eu-%02d", i), ExpiresAt: exp})
	}
	h.create("us-01")
	h.waitCount(user.Filter{}, 31)

	dis := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "eu-"}})
	if dis.Report.Records != 30 {
		t.Fatalf("report %+v", dis.Report)
	}
	h.waitJob(dis.Job.ID, time.Minute)
	h.waitCount(user.Filter{Status: user.StatusDisabled}, 30)

	ext := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindExtend, ExtendBy: "30d", Filter: &job.Filter{ExpiresBefore: exp.Add(time.Hour)}})
	if rec := h.waitJob(ext.Job.ID, time.Minute); rec.Done != 30 {
		t.Fatalf("extend %+v", rec)
	}
	u := must[user.User](h, subject.UsersGet, user.GetRequest{Name: "eu-07"})
	if !u.ExpiresAt.Equal(exp.Add(30 * 24 * time.Hour)) {
		t.Fatalf("expiry %s, want %s", u.ExpiresAt, exp.Add(30*24*time.Hour))
	}
	rb := mustJobs[job.Job](h, subject.JobsRollback, job.IDRequest{ID: ext.Job.ID})
	h.waitJob(rb.ID, time.Minute)
	u = must[user.User](h, subject.UsersGet, user.GetRequest{Name: "eu-07"})
	if !u.ExpiresAt.Equal(exp) || u.Status != user.StatusDisabled {
		t.Fatalf("after rollback: expiry %s status %s", u.ExpiresAt, u.Status)
	}

	mv := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindMove, Nodes: []string{"fra-1"}, Filter: &job.Filter{Status: user.StatusDisabled}})
	h.waitJob(mv.Job.ID, time.Minute)
	h.waitCount(user.Filter{Node: "fra-1"}, 31) // us-01 is placed on every node
	h.waitCount(user.Filter{Node: "nyc-1"}, 1)
}

// TestPauseResumeCancel pauses a job before its items are applied, resumes
// it, and cancels another: a cancelled job's unapplied items are skipped.
func TestPauseResumeCancel(t *testing.T) {
	h := newHarness(t)
	h.cfg.JobWorkers = 1
	h.cfg.JobBatch = 10
	stop := h.start()
	stop() // items wait in JOBS while no replica runs
	h.start()
	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindGenerate, Count: 500, NamePrefix: "gen"})
	id := resp.Job.ID
	if _, err := callJobs[job.Job](h, subject.JobsPause, job.IDRequest{ID: id}); err != nil && !errors.Is(err, errs.Conflict) {
		t.Fatal(err)
	}
	rec := mustJobs[job.Job](h, subject.JobsGet, job.IDRequest{ID: id})
	if rec.State == job.StatePaused {
		p1 := rec.Processed()
		rec2 := mustJobs[job.Job](h, subject.JobsGet, job.IDRequest{ID: id})
		if rec2.State != job.StatePaused || rec2.Processed() < p1 {
			t.Fatalf("paused job moved on: %+v", rec2)
		}
		mustJobs[job.Job](h, subject.JobsResume, job.IDRequest{ID: id})
	}
	if rec := h.waitJob(id, time.Minute); rec.State != job.StateCompleted || rec.Done != 500 {
		t.Fatalf("job %+v", rec)
	}
	if _, err := callJobs[job.Job](h, subject.JobsCancel, job.IDRequest{ID: id}); !errors.Is(err, errs.Conflict) {
		t.Fatalf("cancel of a completed job: %v, want Conflict", err)
	}

	resp = mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindGenerate, Count: 2000, NamePrefix: "more"})
	c := mustJobs[job.Job](h, subject.JobsCancel, job.IDRequest{ID: resp.Job.ID})
	rec = h.waitJob(c.ID, time.Minute)
	if rec.State != job.StateCancelled || rec.Done+rec.Failed+rec.Skipped != 2000 {
		t.Fatalf("cancelled job %+v", rec)
	}
	h.waitCount(user.Filter{NamePrefix: "more"}, rec.Done)
}

// importResult runs one import of data on a fresh server with replicas
// registry replicas and returns the job and what the registry holds, by
// name, without ids, credentials and times.
func importResult(t *testing.T, replicas int, data []byte) (job.Job, map[string]string) {
	h := newHarness(t)
	h.cfg.JobBatch = 20
	for range replicas {
		h.start()
	}
	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: data})
	rec := h.waitJob(resp.Job.ID, time.Minute)
	h.waitCount(user.Filter{}, rec.Done)
	out := map[string]string{}
	for _, u := range h.allUsers() {
		out[u.Name] = fmt.Sprintf("%s|%s|%v|%d|%s", u.Status, u.Email, u.Protocols, u.TrafficLimitBytes, u.LimitReset)
	}
	return rec, out
}

// TestTwoReplicasShareAJob runs one import on two replicas: both apply
// batches of it, and the result is what one replica makes of it.
func TestTwoReplicasShareAJob(t *testing.T) {
	data := csvUsers("rep", 3000)
	one, alone := importResult(t, 1, data)
	two, shared := importResult(t, 2, data)
	if len(two.Workers) != 2 {
		t.Fatalf("batches by replica %v: want both replicas to apply some", two.Workers)
	}
	for w, n := range two.Workers {
		if n == 0 {
			t.Fatalf("replica %s applied nothing", w)
		}
	}
	if one.Done != 3000 || two.Done != one.Done || two.Failed != 0 {
		t.Fatalf("one replica %+v, two %+v", one, two)
	}
	if fmt.Sprint(alone) != fmt.Sprint(shared) {
		t.Fatal("two replicas made a different registry than one")
	}
	t.Logf("batches by replica: %v", two.Workers)
}

// TestListAndBulkFilterSelectTheSameNodeUsers: a node filter resolves the
// node's groups from its enrollment in the users service, for listing,
// counting and job filters alike (issue 18.9: the job planner used to see
// only users placed on the node by name).
func TestListAndBulkFilterSelectTheSameNodeUsers(t *testing.T) {
	h := newHarness(t)
	h.start()
	enrolls, err := h.js.KeyValue(ctxT(t), subject.BucketEnrollments)
	if err != nil {
		t.Fatal(err)
	}
	en, _ := json.Marshal(node.Enrollment{ID: "n1", Groups: []string{"eu"}, State: node.EnrollJoined})
	if _, err := enrolls.Put(ctxT(t), "n1", en); err != nil {
		t.Fatal(err)
	}
	placed := map[string]user.Placement{
		"by-group": {Groups: []string{"eu"}}, "by-name": {Nodes: []string{"n1"}}, "everywhere": {All: true},
		"other-group": {Groups: []string{"us"}}, "other-node": {Nodes: []string{"n2"}},
	}
	for name, p := range placed {
		must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: name, Placement: &p})
	}
	h.waitCount(user.Filter{}, len(placed))
	list := must[user.ListResponse](h, subject.UsersList, user.ListRequest{Filter: user.Filter{Node: "n1"}})
	var listed []string
	for _, u := range list.Users {
		listed = append(listed, u.Name)
	}
	slices.Sort(listed)
	if want := []string{"by-group", "by-name", "everywhere"}; !slices.Equal(listed, want) {
		t.Fatalf("list --node n1: %v, want %v", listed, want)
	}
	if c := must[user.CountResponse](h, subject.UsersCount, user.Filter{Node: "n1"}); c.Count != 3 {
		t.Fatalf("count --node n1: %d, want 3", c.Count)
	}
	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{Node: "n1"}})
	h.waitJob(resp.Job.ID, time.Minute)
	var disabled []string
	for _, u := range must[user.ListResponse](h, subject.UsersList, user.ListRequest{Filter: user.Filter{Status: user.StatusDisabled}}).Users {
		disabled = append(disabled, u.Name)
	}
	slices.Sort(disabled)
	if !slices.Equal(disabled, listed) {
		t.Fatalf("bulk disable --filter node=n1 disabled %v; the list selected %v", disabled, listed)
	}
}
