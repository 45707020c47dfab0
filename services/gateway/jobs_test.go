package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/gateway"

	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// csvFile is a CSV import of n users named prefix-<i>.
func csvFile(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("name,email\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%04d,%s%d@example.com\n", prefix, i, prefix, i)
	}
	return b.Bytes()
}

// form is a multipart/form-data body with the file part and fields.
func form(t testing.TB, file []byte, fields ...string) (body []byte, contentType string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "users.csv")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), mw.FormDataContentType()
}

// postForm sends a multipart job request as role.
func (h *harness) postForm(role string, body []byte, contentType string) response {
	h.t.Helper()
	return h.do("POST", "/api/v1/jobs", role, body, "Content-Type", contentType)
}

// waitJob polls a job over HTTP until it is final.
func (h *harness) waitJob(id string) job.Job {
	h.t.Helper()
	var rec job.Job
	waitfor.Cond(h.t, time.Minute, func() error {
		r := h.do("GET", "/api/v1/jobs/"+id, "viewer", nil)
		if r.status != http.StatusOK {
			return fmt.Errorf("status %d: %s", r.status, r.body)
		}
		if err := json.Unmarshal(r.body, &rec); err != nil {
			return err
		}
		if !rec.State.Final() {
			return fmt.Errorf("job %s: %d of %d", rec.State, rec.Processed(), rec.Total)
		}
		return nil
	})
	return rec
}

// jobStream reads a job's event stream to its end (it ends after the
// finished event) and returns its events.
func (h *harness) jobStream(id, lastID string) (int, []sseEvent) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.url+"/api/v1/jobs/"+id+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokens["viewer"])
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("reading job stream: %v", err)
	}
	var out []sseEvent
	for block := range strings.SplitSeq(string(data), "\n\n") {
		var e sseEvent
		for line := range strings.SplitSeq(block, "\n") {
			switch {
			case strings.HasPrefix(line, "id: "):
				e.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data += line[6:]
			}
		}
		if e.data != "" {
			out = append(out, e)
		}
	}
	return resp.StatusCode, out
}

// TestJobsOverHTTP drives bulk jobs the way the CLI does, against the real
// users service: a multipart dry run, a JSON import, progress over SSE to
// the end (and 204 when resumed after it), a change by filter, its
// rollback, and control of a finished job.
func TestJobsOverHTTP(t *testing.T) {
	h := newHarness(t)
	h.createUser("keeper")

	// Dry run of a file with a bad row: the report, no job.
	file := append(csvFile("imp", 30), []byte("x,not-an-email\n")...)
	body, ct := form(t, file, "dry_run", "true", "format", "csv")
	r := h.postForm("operator", body, ct)
	var dry job.CreateResponse
	if r.status != http.StatusOK || json.Unmarshal(r.body, &dry) != nil || dry.Job != nil {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	if dry.Report.Records != 31 || dry.Report.Valid != 30 || dry.Report.Invalid != 1 || len(dry.Report.Problems) != 2 || dry.Report.Problems[0].Line != 32 {
		t.Fatalf("dry run report %+v", dry.Report)
	}

	// The same file for real is refused whole, naming each problem.
	body, ct = form(t, file)
	r = h.postForm("operator", body, ct)
	if p := h.problem(r); r.status != http.StatusBadRequest || p.Code != "invalid_records" || len(p.Errors) != 2 || p.Errors[0].Field != "line 32: name" || !strings.Contains(p.Hint, "dry_run") {
		t.Fatalf("invalid file: %d %s", r.status, r.body)
	}

	// With skip_invalid, as multipart; then a JSON import.
	body, ct = form(t, file, "skip_invalid", "true", "policy", "continue")
	r = h.postForm("operator", body, ct)
	var created job.CreateResponse
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &created) != nil || created.Job == nil || r.header.Get("Location") != "/api/v1/jobs/"+created.Job.ID {
		t.Fatalf("import: %d %v %s", r.status, r.header, r.body)
	}
	if rec := h.waitJob(created.Job.ID); rec.State != job.StateCompleted || rec.Done != 30 || rec.Skipped != 1 {
		t.Fatalf("skip_invalid import %+v", rec)
	}
	h.mustJSON("POST", "/api/v1/jobs", "operator", job.CreateRequest{Kind: job.KindImport, Data: csvFile("json", 20)}, http.StatusAccepted, &created)
	id := created.Job.ID

	// Progress over SSE: the last event at once, then each new one, until
	// the finished event, which ends the stream.
	status, evs := h.jobStream(id, "")
	if status != http.StatusOK || len(evs) == 0 {
		t.Fatalf("job stream: %d %v", status, evs)
	}
	last := evs[len(evs)-1]
	var env event.Envelope
	var je job.Event
	if err := json.Unmarshal([]byte(last.data), &env); err != nil || env.Decode(&je) != nil {
		t.Fatalf("last event %+v", last)
	}
	if last.typ != string(event.JobFinished) || je.Job.ID != id || je.Job.Done != 20 || je.Job.State != job.StateCompleted {
		t.Fatalf("last event %s %+v", last.typ, je.Job)
	}
	if status, evs := h.jobStream(id, last.id); status != http.StatusNoContent || len(evs) != 0 {
		t.Fatalf("resumed after the finished event: %d %v", status, evs)
	}
	if status, evs := h.jobStream(id, "0"); status != http.StatusOK || evs[len(evs)-1].id != last.id || evs[0].typ != string(event.JobProgress) {
		t.Fatalf("resumed from the start: %d %v", status, evs)
	}

	// List (viewers may read), get, control of a finished job.
	var list job.ListResponse
	h.mustJSON("GET", "/api/v1/jobs?state=completed&limit=10", "viewer", nil, http.StatusOK, &list)
	if len(list.Jobs) != 2 || list.Jobs[0].ID != id {
		t.Fatalf("list %+v", list.Jobs)
	}
	if r := h.do("POST", "/api/v1/jobs/"+id+"/pause", "operator", nil); r.status != http.StatusConflict || !strings.Contains(h.problem(r).Hint, "pause needs a running job") {
		t.Fatalf("pause of a finished job: %d %s", r.status, r.body)
	}

	// A change by filter, and its rollback.
	var dis job.CreateResponse
	h.mustJSON("POST", "/api/v1/jobs", "operator", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "json-"}}, http.StatusAccepted, &dis)
	if rec := h.waitJob(dis.Job.ID); rec.Done != 20 {
		t.Fatalf("disable %+v", rec)
	}
	var page user.ListResponse
	h.mustJSON("GET", "/api/v1/users?status=disabled&limit=100", "viewer", nil, http.StatusOK, &page)
	if len(page.Users) != 20 {
		t.Fatalf("%d disabled users, want 20", len(page.Users))
	}
	var rb job.Job
	r = h.mustJSON("POST", "/api/v1/jobs/"+dis.Job.ID+"/rollback", "operator", nil, http.StatusAccepted, &rb)
	if rb.RollbackOf != dis.Job.ID || r.header.Get("Location") != "/api/v1/jobs/"+rb.ID {
		t.Fatalf("rollback %+v %v", rb, r.header)
	}
	h.waitJob(rb.ID)
	waitfor.Cond(t, 10*time.Second, func() error {
		h.mustJSON("GET", "/api/v1/users?status=disabled", "viewer", nil, http.StatusOK, &page)
		if len(page.Users) != 0 {
			return fmt.Errorf("%d users still disabled", len(page.Users))
		}
		return nil
	})

	// Every change was audited under the job's id.
	waitfor.Cond(t, 10*time.Second, func() error {
		for _, e := range natstestEvents(t, h) {
			var a event.Audit
			if e.Decode(&a) == nil && a.Action == "jobs.rollback" && a.Target == "job/"+dis.Job.ID && a.Result == event.AuditOK {
				return nil
			}
		}
		return fmt.Errorf("no audit record of the rollback")
	})
}

// TestJobBadInput checks each refusal of a job request: status, code, the
// field named and a hint; and that shape errors never reach NATS.
// TestJobBadInput: requests the gateway refuses never reach the jobs
// service, files over --max-import-bytes (1 MiB here) are a 413 that
// names the limit and the setting, what only the registry can judge is
// still precise, and no refused import leaves its file in the job inputs
// store.
func TestJobBadInput(t *testing.T) {
	const maxImport = 1 << 20
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.MaxImportBytes = maxImport }})
	h.createUser("someone")
	var leaked atomic.Int64
	spy, err := h.nc.Subscribe("vpn.jobs.>", func(*nats.Msg) { leaked.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Unsubscribe()
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("a"), maxImport+1)
	bigForm, bigCT := form(t, big)
	noFile, noFileCT := form(t, nil, "dry_run", "true")
	badBool, badBoolCT := form(t, []byte("name\nx\n"), "dry_run", "maybe")
	unknown, unknownCT := form(t, []byte("name\nx\n"), "admin", "1")
	notImport, notImportCT := form(t, []byte("name\nx\n"), "kind", "disable")
	limit := int64(-1)
	cases := []struct {
		name        string
		path        string
		body        any
		ct          string
		status      int
		code, field string
	}{
		{"unknown kind", "/api/v1/jobs", job.CreateRequest{Kind: "explode"}, "", 400, "invalid", "kind"},
		{"file too large in json", "/api/v1/jobs", job.CreateRequest{Kind: job.KindImport, Data: big}, "", 413, "file_too_large", "data"},
		{"file too large in a form", "/api/v1/jobs", bigForm, bigCT, 413, "file_too_large", "file"},
		{"form without a file", "/api/v1/jobs", noFile, noFileCT, 400, "invalid", "file"},
		{"form with a bad boolean", "/api/v1/jobs", badBool, badBoolCT, 400, "wrong_type", "dry_run"},
		{"form with an unknown field", "/api/v1/jobs", unknown, unknownCT, 400, "unknown_field", "admin"},
		{"form of another kind", "/api/v1/jobs", notImport, notImportCT, 400, "invalid", "kind"},
		{"form without boundary", "/api/v1/jobs", "x", "multipart/form-data", 400, "malformed_form", ""},
		{"import without data", "/api/v1/jobs", job.CreateRequest{Kind: job.KindImport}, "", 400, "invalid", "data"},
		{"filter missing", "/api/v1/jobs", job.CreateRequest{Kind: job.KindDelete}, "", 400, "invalid", "filter"},
		{"bad filter status", "/api/v1/jobs", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{Status: "sleepy"}}, "", 400, "invalid", "filter.status"},
		{"negative limit", "/api/v1/jobs", job.CreateRequest{Kind: job.KindSetLimit, Filter: &job.Filter{Status: "active"}, TrafficLimitBytes: &limit}, "", 400, "invalid", "traffic_limit_bytes"},
		{"data on a change", "/api/v1/jobs", job.CreateRequest{Kind: job.KindEnable, Data: []byte("x"), Filter: &job.Filter{Status: "active"}}, "", 400, "invalid", "data"},
		{"unknown json field", "/api/v1/jobs", `{"kind":"import","file":"x"}`, "", 400, "unknown_field", "file"},
		{"duplicate json key", "/api/v1/jobs", `{"kind":"disable","filter":{"status":"active"},"kind":"delete"}`, "", 400, "duplicate_field", "kind"},
		{"bad job id", "/api/v1/jobs/a.b", nil, "", 400, "invalid_path", "job"},
		{"bad state", "/api/v1/jobs?state=sleeping", nil, "", 400, "invalid_query", "state"},
		{"unknown query on events", "/api/v1/jobs/x/events?kind=user", nil, "", 400, "invalid_query", "kind"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := "POST"
			if c.body == nil {
				method = "GET"
			}
			var hdr []string
			if c.ct != "" {
				hdr = []string{"Content-Type", c.ct}
			}
			r := h.do(method, c.path, "operator", c.body, hdr...)
			p := h.problem(r)
			if r.status != c.status || p.Code != c.code {
				t.Fatalf("%d %s, want %d %s: %s", r.status, p.Code, c.status, c.code, r.body)
			}
			if c.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != c.field) {
				t.Fatalf("errors %+v, want field %s", p.Errors, c.field)
			}
			if c.code == "file_too_large" && (!strings.Contains(p.Detail, "1048576 bytes (1 MiB)") || !strings.Contains(p.Detail, "--max-import-bytes")) {
				t.Fatalf("detail %q does not name the limit and its setting", p.Detail)
			}
		})
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("%d job requests that failed validation reached NATS", n)
	}

	// What only the registry can judge is still precise.
	registry := []struct {
		name, method, path string
		body               any
		status             int
		code, field, hint  string
	}{
		{"filter matching nothing", "POST", "/api/v1/jobs", job.CreateRequest{Kind: job.KindDisable, Filter: &job.Filter{NamePrefix: "nobody"}}, 400, "filter_matches_nothing", "filter", "GET /api/v1/users"},
		{"unknown job", "GET", "/api/v1/jobs/nosuchjob", nil, 404, "not_found", "job", "vpn jobs list"},
		{"cancel of an unknown job", "POST", "/api/v1/jobs/nosuchjob/cancel", nil, 404, "not_found", "job", "vpn jobs list"},
		{"events of an unknown job", "GET", "/api/v1/jobs/nosuchjob/events", nil, 404, "not_found", "job", "vpn jobs list"},
		{"records with problems", "POST", "/api/v1/jobs", job.CreateRequest{Kind: job.KindImport, Data: []byte("name\nsomeone\n")}, 400, "invalid_records", "line 2: name", "skip_invalid"},
	}
	for _, c := range registry {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.path, "operator", c.body)
			p := h.problem(r)
			if r.status != c.status || p.Code != c.code || len(p.Errors) == 0 || p.Errors[0].Field != c.field || !strings.Contains(p.Hint, c.hint) {
				t.Fatalf("%d %s, want %d %s field %s hint ~%q: %s", r.status, p.Code, c.status, c.code, c.field, c.hint, r.body)
			}
		})
	}
	obs, err := h.js.ObjectStore(ctxT(t), subject.BucketJobInputs)
	if err != nil {
		t.Fatal(err)
	}
	if left, err := obs.List(ctxT(t)); !errors.Is(err, jetstream.ErrNoObjectsFound) {
		t.Fatalf("refused imports left %d files in %s (%v)", len(left), subject.BucketJobInputs, err)
	}
}

// natstestEvents reads every audit event from EVENTS.
func natstestEvents(t *testing.T, h *harness) []event.Envelope {
	t.Helper()
	cons, err := h.js.OrderedConsumer(ctxT(t), subject.StreamEvents, jsFilter(subject.EventsOfKind(subject.KindAudit)))
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Envelope
	for {
		m, err := cons.Next(jsWait(200 * time.Millisecond))
		if err != nil {
			return out
		}
		var env event.Envelope
		if json.Unmarshal(m.Data(), &env) == nil {
			out = append(out, env)
		}
	}
}
