package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/openapi"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/jobinput"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Limits of POST /api/v1/jobs. The file limit is the gateway's
// MaxImportBytes (--max-import-bytes). A JSON body carries the file in
// base64, so its limit is the file limit in base64 plus room for the other
// fields; a multipart body carries the file as it is.
const (
	formFieldMax = 1024
	jobFileField = "file"
	jobFormRoom  = 64 << 10
)

// JobJSONBytes is the largest JSON body of POST /api/v1/jobs that may
// carry a file of maxFile bytes.
func JobJSONBytes(maxFile int64) int64 { return (maxFile+2)/3*4 + jobFormRoom }

// jobForm lists the text fields of a multipart job request.
var jobForm = &openapi.Form{
	File:        jobFileField,
	Description: "the file to import, at most --max-import-bytes (default 64 MiB); it travels to the registry through the job inputs object store",
	Fields: []openapi.Param{
		{Name: "kind", Description: "import (the default; a file is always an import)", Enum: []string{string(job.KindImport)}},
		{Name: "format", Description: "the file's format (default: detected)", Enum: append([]string{"auto"}, enum(job.Formats)...)},
		{Name: "dry_run", Type: "boolean", Description: "validate only and answer the report"},
		{Name: "skip_invalid", Type: "boolean", Description: "apply the valid records and count the rest as skipped"},
		{Name: "policy", Description: "what a failed item does to the job (default continue)", Enum: []string{string(job.PolicyContinue), string(job.PolicyStop)}},
		{Name: "idempotency_key", Description: "makes a retried create return the job the first attempt created"},
	},
}

// fileTooLarge is the 413 of a file over limit bytes, naming the limit
// and the setting that sets it.
func fileTooLarge(field string, limit int64) error {
	p := problem.WithStatus(http.StatusRequestEntityTooLarge, errs.Invalid, problem.CodeFileTooLarge,
		fmt.Sprintf("the file is larger than %d bytes (%s), the most one import takes (the gateway's --max-import-bytes)", limit, mib(limit)),
		fmt.Sprintf("split the file into parts of at most %s and import each (ids and names stay unique across parts), or raise --max-import-bytes", mib(limit)))
	p.Errors = []errs.FieldError{{Field: field, Rule: fmt.Sprintf("must be at most %d bytes", limit)}}
	return p
}

func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// DecodeJobJSON decodes the JSON body of POST /api/v1/jobs (a
// job.CreateRequest, the file base64 in data), read up to
// JobJSONBytes(maxFile) bytes. A file over maxFile is a 413 naming the
// field and the limit; so is an input named by the client (only the
// gateway puts files in the job inputs store).
func DecodeJobJSON(body io.Reader, contentType string, maxFile int64) (job.CreateRequest, error) {
	req, err := DecodeJSON[job.CreateRequest](body, contentType, JobJSONBytes(maxFile))
	var p *problem.Problem
	if errors.As(err, &p) && p.Code == problem.CodeBodyTooLarge {
		return req, fileTooLarge("data", maxFile)
	}
	if err != nil {
		return req, err
	}
	if int64(len(req.Data)) > maxFile {
		return req, fileTooLarge("data", maxFile)
	}
	if req.Input != nil {
		return req, problem.Fields(errs.Invalid.String(), errs.FieldError{Field: "input", Rule: "is set by the gateway: send the file in data (base64) or as a multipart part named file"})
	}
	return req, nil
}

// DecodeJobForm decodes a multipart/form-data body of POST /api/v1/jobs:
// a part named file (the file to import, at most maxFile bytes) and the
// text fields of jobForm. A file is always an import.
func DecodeJobForm(body io.Reader, contentType string, maxFile int64) (job.CreateRequest, error) {
	req := job.CreateRequest{Kind: job.KindImport}
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil || params["boundary"] == "" {
		return req, problem.New(errs.Invalid, problem.CodeMalformedForm, "the multipart body has no boundary",
			"send multipart/form-data with a boundary parameter, as HTTP clients do (curl -F file=@users.csv)")
	}
	mr := multipart.NewReader(body, params["boundary"])
	seen := map[string]bool{}
	var fe []errs.FieldError
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return req, malformedForm(err, maxFile)
		}
		name := part.FormName()
		if seen[name] {
			fe = append(fe, errs.FieldError{Field: name, Rule: "must be sent once"})
			continue
		}
		seen[name] = true
		if name == jobFileField {
			data, err := io.ReadAll(io.LimitReader(part, maxFile+1))
			if err != nil {
				return req, malformedForm(err, maxFile)
			}
			if int64(len(data)) > maxFile {
				return req, fileTooLarge(jobFileField, maxFile)
			}
			req.Data = data
			continue
		}
		if !slices.ContainsFunc(jobForm.Fields, func(p openapi.Param) bool { return p.Name == name }) {
			p := problem.Fields(problem.CodeUnknownField, errs.FieldError{Field: name, Rule: "is not a field of this request"})
			p.Detail = fmt.Sprintf("unknown form field %q", name)
			p.Hint = "send the file as the part named file, and only the fields kind, format, dry_run, skip_invalid, policy, idempotency_key"
			return req, p
		}
		raw, err := io.ReadAll(io.LimitReader(part, formFieldMax+1))
		if err != nil {
			return req, malformedForm(err, maxFile)
		}
		if len(raw) > formFieldMax {
			fe = append(fe, errs.FieldError{Field: name, Rule: fmt.Sprintf("must be at most %d bytes", formFieldMax)})
			continue
		}
		v := string(raw)
		switch name {
		case "kind":
			if v != string(job.KindImport) {
				fe = append(fe, errs.FieldError{Field: "kind", Rule: "must be import when a file is sent (other kinds take a JSON body)"})
			}
		case "format":
			if v != "auto" {
				req.Format = job.Format(v)
			}
		case "policy":
			req.Policy = job.Policy(v)
		case "idempotency_key":
			req.IdempotencyKey = v
		case "dry_run", "skip_invalid":
			b, err := strconv.ParseBool(v)
			if err != nil {
				p := problem.Fields(problem.CodeWrongType, errs.FieldError{Field: name, Rule: "must be true or false"})
				p.Detail = fmt.Sprintf("field %s has the wrong type", name)
				return req, p
			}
			if name == "dry_run" {
				req.DryRun = b
			} else {
				req.SkipInvalid = b
			}
		}
	}
	if !seen[jobFileField] {
		fe = append(fe, errs.FieldError{Field: jobFileField, Rule: "must be present: the file to import, as the part named file"})
	}
	if len(fe) > 0 {
		return req, problem.Fields(errs.Invalid.String(), fe...)
	}
	return req, nil
}

func malformedForm(err error, maxFile int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fileTooLarge(jobFileField, maxFile)
	}
	return problem.New(errs.Invalid, problem.CodeMalformedForm, "the multipart body cannot be read: "+err.Error(),
		"send valid multipart/form-data (curl -F file=@users.csv -F dry_run=true)")
}

// ValidateJob checks the shape of a job request before it travels: the
// kind, the policy and format, and that the parameters fit the kind. What
// only the registry can judge (the records of a file, which users a filter
// selects) it leaves to the registry.
func ValidateJob(req job.CreateRequest) error {
	var fe []errs.FieldError
	add := func(field, rule string) { fe = append(fe, errs.FieldError{Field: field, Rule: rule}) }
	if !slices.Contains(job.Kinds, req.Kind) {
		add("kind", "must be one of "+strings.Join(enum(job.Kinds), ", "))
	}
	if req.Policy != "" && req.Policy != job.PolicyContinue && req.Policy != job.PolicyStop {
		add("policy", "must be continue or stop")
	}
	if req.Format != job.FormatAuto && !slices.Contains(job.Formats, req.Format) {
		add("format", "must be one of "+strings.Join(enum(job.Formats), ", ")+" (or empty: detected)")
	}
	if len(req.IdempotencyKey) > maxIdempotencyKey {
		add("idempotency_key", fmt.Sprintf("must be at most %d characters", maxIdempotencyKey))
	}
	k := req.Kind
	if k == job.KindImport {
		if len(req.Data) == 0 {
			add("data", "must hold the file to import (base64 in JSON, or a multipart part named file)")
		}
	} else {
		if len(req.Data) > 0 {
			add("data", "is only for import")
		}
		if req.Format != job.FormatAuto {
			add("format", "is only for import")
		}
	}
	if k == job.KindGenerate {
		if req.Count < 1 || req.Count > job.MaxGenerate {
			add("count", fmt.Sprintf("must be 1-%d", job.MaxGenerate))
		}
		if req.NamePrefix == "" || len(req.NamePrefix) > 32 || !subject.ValidToken(req.NamePrefix) {
			add("name_prefix", "must be 1-32 characters of A-Z a-z 0-9 _ -")
		}
		if req.Template != nil {
			fe = checkProtocols(fe, req.Template.Protocols)
		}
	} else {
		if req.Count != 0 {
			add("count", "is only for generate")
		}
		if req.NamePrefix != "" {
			add("name_prefix", "is only for generate (a filter's prefix is filter.name_prefix)")
		}
		if req.Template != nil {
			add("template", "is only for generate")
		}
	}
	if k.ByFilter() {
		fe = append(fe, checkFilter(req.Filter)...)
	} else if req.Filter != nil {
		add("filter", "is only for changes by filter (disable, enable, delete, set_expiry, extend, set_limit, reset_traffic, rotate_credentials, move)")
	}
	switch k {
	case job.KindSetExpiry:
		if req.ExpiresAt.IsZero() {
			add("expires_at", "must be set: the new expiry (RFC 3339)")
		}
	case job.KindExtend:
		if req.ExtendBy == "" {
			add("extend_by", "must be set: a duration (720h) or days (30d)")
		}
	case job.KindSetLimit:
		if req.TrafficLimitBytes == nil || *req.TrafficLimitBytes < 0 {
			add("traffic_limit_bytes", "must be set, 0 (unlimited) or more")
		}
	case job.KindMove:
		if len(req.Nodes) == 0 {
			add("nodes", "must list at least one node")
		}
		for _, n := range req.Nodes {
			if !subject.ValidToken(n) {
				add("nodes", fmt.Sprintf("%q is not a node id", n))
				break
			}
		}
	case job.KindRotate:
		fe = checkProtocols(fe, req.Protocols)
	}
	return errs.Fields(fe...)
}

func checkFilter(f *job.Filter) []errs.FieldError {
	if f == nil || f.Empty() {
		return []errs.FieldError{{Field: "filter", Rule: "must name at least one condition: status, protocol, node, name_prefix, expires_before, usage_above"}}
	}
	var fe []errs.FieldError
	if f.Status != "" && !slices.Contains(user.Statuses, f.Status) {
		fe = append(fe, errs.FieldError{Field: "filter.status", Rule: "must be one of " + strings.Join(enum(user.Statuses), ", ")})
	}
	if f.Protocol != "" && !protocol.Known(f.Protocol) {
		fe = append(fe, errs.FieldError{Field: "filter.protocol", Rule: "must be one of " + strings.Join(enum(protocol.Names()), ", ")})
	}
	if f.Node != "" && !subject.ValidToken(f.Node) {
		fe = append(fe, errs.FieldError{Field: "filter.node", Rule: "must be a node id"})
	}
	if len(f.NamePrefix) > 32 {
		fe = append(fe, errs.FieldError{Field: "filter.name_prefix", Rule: "must be at most 32 characters"})
	}
	if f.UsageAbove < 0 {
		fe = append(fe, errs.FieldError{Field: "filter.usage_above", Rule: "must not be negative"})
	}
	return fe
}

// JobsQuery reads the query of GET /api/v1/jobs.
func JobsQuery(q url.Values) (job.ListRequest, error) {
	var fe []errs.FieldError
	req := job.ListRequest{
		State: queryEnum(q, "state", jobStates, &fe),
		Limit: queryInt(q, "limit", 1, 500, 50, &fe),
	}
	if len(fe) > 0 {
		return req, problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	return req, nil
}

var jobStates = []job.State{job.StateRunning, job.StatePaused, job.StateCompleted, job.StateFailed, job.StateCancelled}

// jobProblem gives the jobs service's refusals their precise code and a
// hint that says what to do, choosing by class and by the code the refusal
// carries (errs.CodeOf), never by its wording.
func jobProblem(err error, id string) error {
	fields := errs.FieldsOf(err)
	switch errs.ClassOf(err) {
	case errs.NotFound:
		p := problem.New(errs.NotFound, errs.NotFound.String(), fmt.Sprintf("no job %s", id),
			"list jobs with `vpn jobs list` (GET /api/v1/jobs); a job id is the id in the reply that created it")
		p.Errors = []errs.FieldError{{Field: "job", Rule: "is not a job id"}}
		return p
	case errs.Conflict:
		p := problem.New(errs.Conflict, errs.Conflict.String(), errs.Message(err),
			"pause needs a running job, resume a paused one, cancel a running or paused one, rollback a finished one; GET /api/v1/jobs/"+id+" shows its state")
		return p
	}
	switch errs.CodeOf(err) {
	case errs.CodeFilterMatchesNothing:
		p := problem.Fields(problem.CodeFilterMatchesNothing, fields...)
		p.Detail = "the filter selects no user"
		p.Hint = "check the filter against the users it should select: GET /api/v1/users with the same status, protocol, node and name_prefix (`vpn users list --status ... --prefix ...`)"
		return p
	case errs.CodeInvalidRecords:
		p := problem.Fields(problem.CodeInvalidRecords, fields...)
		p.Detail = errs.Message(err)
		p.Hint = "send the request again with dry_run=true for the full report (`vpn users import FILE --dry-run`); fix the file, or set skip_invalid=true to apply only the valid records"
		return p
	}
	return err
}

func jobPath(id string) string { return "/api/v1/jobs/" + id }

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	var req job.CreateRequest
	var err error
	maxFile := s.cfg.MaxImportBytes
	fileField := "data"
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "multipart/form-data":
		fileField = jobFileField
		if r.ContentLength > maxFile+jobFormRoom {
			return fileTooLarge(jobFileField, maxFile)
		}
		req, err = DecodeJobForm(http.MaxBytesReader(w, r.Body, maxFile+jobFormRoom), r.Header.Get("Content-Type"), maxFile)
	case r.ContentLength > JobJSONBytes(maxFile):
		return fileTooLarge("data", maxFile)
	default:
		req, err = DecodeJobJSON(r.Body, r.Header.Get("Content-Type"), maxFile)
	}
	if err != nil {
		return err
	}
	field, key := idempotencyKey(r, req.IdempotencyKey)
	if len(key) > maxIdempotencyKey {
		return problem.Fields(errs.Invalid.String(), errs.FieldError{Field: field, Rule: fmt.Sprintf("must be at most %d characters", maxIdempotencyKey)})
	}
	req.IdempotencyKey = ""
	setTarget(r, "job", string(req.Kind))
	if err := ValidateJob(req); err != nil {
		return err
	}
	done := func(error) {}
	if key != "" && !req.DryRun {
		if req.IdempotencyKey, done, err = s.idempotent(r, "jobs.create", field, key, req); err != nil {
			return err
		}
	}
	// The file goes to the registry through the job inputs store, never
	// in the request: a cluster's NATS takes 1 MiB messages.
	var in *job.Input
	if len(req.Data) > 0 {
		stored, err := jobinput.Put(r.Context(), s.env.JS, bytes.NewReader(req.Data), maxFile, fileField)
		if errs.CodeOf(err) == errs.CodeInputTooLarge {
			done(err)
			return fileTooLarge(fileField, maxFile)
		}
		if err != nil {
			done(err)
			return err
		}
		in, req.Input, req.Data = &stored, &stored, nil
	}
	resp, err := callWithin[job.CreateResponse](s, r, subject.JobsCmd(subject.JobsCreate), req, max(s.cfg.JobTimeout, s.cfg.UpstreamTimeout))
	done(err)
	if in != nil && inputUnused(in, resp, err) {
		if derr := jobinput.Delete(context.WithoutCancel(r.Context()), s.env.JS, in.Name); derr != nil {
			s.log.Warn("deleting an unused job input", logkey.Err, derr)
		}
	}
	if err != nil {
		return jobProblem(err, "")
	}
	if resp.Job == nil {
		return writeJSON(w, http.StatusOK, resp)
	}
	setTarget(r, "job", resp.Job.ID)
	w.Header().Set("Location", jobPath(resp.Job.ID))
	return writeJSON(w, http.StatusAccepted, resp)
}

// inputUnused reports whether the input the gateway stored for a create
// is certainly not a job's: a dry run, a refusal (nothing was made), or a
// retried create answered with a job that reads another input. After a
// timeout the registry may still be reading it: it stays, and the job's
// end (or the store's TTL) removes it.
func inputUnused(in *job.Input, resp job.CreateResponse, err error) bool {
	if err != nil {
		switch errs.ClassOf(err) {
		case errs.Invalid, errs.Conflict, errs.NotFound, errs.Forbidden:
			return true
		}
		return false
	}
	return resp.Job == nil || resp.Job.Input == nil || resp.Job.Input.Name != in.Name
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	req, err := JobsQuery(r.URL.Query())
	if err != nil {
		return err
	}
	resp, err := call[job.ListResponse](s, r, subject.JobsCmd(subject.JobsList), req)
	if err != nil {
		return err
	}
	if resp.Jobs == nil {
		resp.Jobs = []job.Job{}
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("job")
	rec, err := call[job.Job](s, r, subject.JobsCmd(subject.JobsGet), job.IDRequest{ID: id})
	if err != nil {
		return jobProblem(err, id)
	}
	return writeJSON(w, http.StatusOK, rec)
}

// jobControl calls a jobs endpoint that takes a job id and answers a job.
func (s *Server) jobControl(endpoint string) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("job")
		timeout := s.cfg.UpstreamTimeout
		if endpoint == subject.JobsRollback {
			timeout = max(s.cfg.JobTimeout, timeout) // reads every undo log
		}
		rec, err := callWithin[job.Job](s, r, subject.JobsCmd(endpoint), job.IDRequest{ID: id}, timeout)
		if err != nil {
			return jobProblem(err, id)
		}
		if endpoint == subject.JobsRollback {
			w.Header().Set("Location", jobPath(rec.ID))
			return writeJSON(w, http.StatusAccepted, rec)
		}
		return writeJSON(w, http.StatusOK, rec)
	}
}

// jobEvents streams one job's events: the last one at once (the job as it
// stands), then every new one, and ends after job.finished.v1. A client
// that resumes after the finished event gets 204, which tells
// EventSource clients to stop reconnecting.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) error {
	o, err := EventsQuery(r)
	if err != nil {
		return err
	}
	id := r.PathValue("job")
	rec, err := call[job.Job](s, r, subject.JobsCmd(subject.JobsGet), job.IDRequest{ID: id})
	if err != nil {
		return jobProblem(err, id)
	}
	subj := subject.JobEvent(id)
	if rec.State.Final() && o.Resume {
		last, err := s.lastEventSeq(r, subj)
		if err != nil {
			return err
		}
		if last != 0 && last <= o.After {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	o.Subjects, o.Last, o.EndAfter, o.Ping = []string{subj}, !o.Resume, event.JobFinished, s.cfg.EventsPing
	return s.stream(w, r, o)
}

// lastEventSeq is the stream sequence of the last event on subj (0: none).
func (s *Server) lastEventSeq(r *http.Request, subj string) (uint64, error) {
	st, err := s.env.JS.Stream(r.Context(), subject.StreamEvents)
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "opening stream %s", subject.StreamEvents)
	}
	m, err := st.GetLastMsgForSubject(r.Context(), subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, errs.Wrap(errs.Unavailable, err, "reading the last event of %s", subj)
	}
	return m.Sequence, nil
}
