package jobs

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/importer"
	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Actions of an item.
const (
	actCreate  = "create"  // store Item.User (import, generate, recreate)
	actEdit    = "edit"    // change user Item.ID as the job's kind says
	actDelete  = "delete"  // delete user Item.ID
	actRestore = "restore" // put Item.Prev's content back on user Item.ID
)

// Item is one unit of work of a job: one user to create, change or
// delete. Items of creates carry the complete user, id and credentials
// included, so that applying an item again stores the same user.
type Item struct {
	N      int        `json:"n"`
	Action string     `json:"action"`
	Name   string     `json:"name,omitempty"`
	ID     string     `json:"id,omitempty"`
	User   *user.User `json:"user,omitempty"`
	Prev   *user.User `json:"prev,omitempty"`
	// UserSeq and NameSeq: see registry.Stored.
	UserSeq uint64 `json:"user_seq,omitempty"`
	NameSeq uint64 `json:"name_seq,omitempty"`
}

// Params are the parameters of a change by filter.
type Params struct {
	ExpiresAt         time.Time       `json:"expires_at,omitzero"`
	ExtendBy          time.Duration   `json:"extend_by,omitempty"`
	TrafficLimitBytes int64           `json:"traffic_limit_bytes,omitempty"`
	Protocols         []user.Protocol `json:"protocols,omitempty"`
	Nodes             []string        `json:"nodes,omitempty"`
}

// Batch is the body of one JOBS message: consecutive items of one job.
type Batch struct {
	Job    string   `json:"job"`
	Index  int      `json:"index"`
	Kind   job.Kind `json:"kind"`
	Params Params   `json:"params"`
	Items  []Item   `json:"items"`
}

// plan is a validated job: its report and the items to apply.
type plan struct {
	report job.Report
	params Params
	items  []Item
	format job.Format
}

// problemsErr turns a report's problems into one Invalid error naming
// each, as "<where>: <field>", with code errs.CodeInvalidRecords.
func problemsErr(r job.Report) error {
	fe := make([]errs.FieldError, 0, len(r.Problems))
	for _, p := range r.Problems {
		fe = append(fe, errs.FieldError{Field: p.Where() + ": " + p.Field, Rule: p.Rule})
	}
	msg := fmt.Sprintf("%d of %d records are invalid; nothing was applied", r.Invalid, r.Records)
	if r.ProblemsOmitted > 0 {
		msg += fmt.Sprintf(" (the first %d problems are listed, %d more are not)", len(r.Problems), r.ProblemsOmitted)
	}
	return &errs.Error{Class: errs.Invalid, Code: errs.CodeInvalidRecords, Msg: msg, Fields: fe}
}

// capReport lists at most job.MaxReportProblems problems and warnings and
// counts the rest, so that the reply fits in one NATS message.
func capReport(r job.Report) job.Report {
	if n := len(r.Problems) - job.MaxReportProblems; n > 0 {
		r.Problems, r.ProblemsOmitted = r.Problems[:job.MaxReportProblems], n
	}
	if n := len(r.Warnings) - job.MaxReportProblems; n > 0 {
		r.Warnings, r.WarningsOmitted = r.Warnings[:job.MaxReportProblems], n
	}
	return r
}

// planImport decodes and checks every record: the registry's rules,
// duplicates inside the file (names in any case, ids), and names and ids
// that already exist.
func planImport(req job.CreateRequest, idx *index.Index, now time.Time) (plan, error) {
	if len(req.Data) == 0 {
		return plan{}, errs.Field("data", "must hold the file to import")
	}
	format, recs, err := importer.Decode(req.Format, req.Data)
	if err != nil {
		return plan{}, err
	}
	p := plan{format: format, report: job.Report{Kind: job.KindImport, Format: format, Records: len(recs)}}
	names := map[string]int{}
	ids := map[string]int{}
	for _, rec := range recs {
		probs := rec.Problems
		p.report.Warnings = append(p.report.Warnings, rec.Warnings...)
		add := func(field, rule string) {
			q := rec.Pos
			q.Field, q.Rule = field, rule
			probs = append(probs, q)
		}
		var u user.User
		if len(probs) == 0 {
			var fe []errs.FieldError
			u, fe = registry.Imported(rec.User, rec.Protocols, now)
			for _, f := range fe {
				add(f.Field, f.Rule)
			}
		}
		if rec.User.Name != "" {
			key := registry.NameKey(rec.User.Name)
			if first, dup := names[key]; dup {
				add("name", fmt.Sprintf("duplicates record %d", first))
			} else {
				names[key] = rec.Pos.Record
				if other, taken := idx.ByName(rec.User.Name); taken {
					add("name", fmt.Sprintf("is taken by user %s", other.ID))
				}
			}
		}
		if rec.User.ID != "" {
			if first, dup := ids[rec.User.ID]; dup {
				add("id", fmt.Sprintf("duplicates record %d", first))
			} else {
				ids[rec.User.ID] = rec.Pos.Record
				if _, taken := idx.Get(rec.User.ID); taken {
					add("id", "already exists")
				}
			}
		}
		if len(probs) > 0 {
			p.report.Invalid++
			p.report.Problems = append(p.report.Problems, probs...)
			continue
		}
		p.report.Valid++
		p.items = append(p.items, Item{N: rec.Pos.Record, Action: actCreate, Name: u.Name, ID: u.ID, User: &u})
	}
	return p, nil
}

// planGenerate makes Count users named NamePrefix plus a zero-padded
// number, each from the template.
func planGenerate(req job.CreateRequest, idx *index.Index, now time.Time) (plan, error) {
	var fe []errs.FieldError
	if req.Count < 1 || req.Count > job.MaxGenerate {
		fe = append(fe, errs.FieldError{Field: "count", Rule: fmt.Sprintf("must be 1-%d", job.MaxGenerate)})
	}
	width := len(strconv.Itoa(max(req.Count, 1)))
	if rule := registry.CheckName(req.NamePrefix + strings.Repeat("0", width)); req.NamePrefix == "" || rule != "" {
		fe = append(fe, errs.FieldError{Field: "name_prefix", Rule: "must make names of 3-32 characters of A-Z a-z 0-9 _ - with the number"})
	}
	if err := errs.Fields(fe...); err != nil {
		return plan{}, err
	}
	tmpl := user.CreateRequest{}
	if req.Template != nil {
		tmpl = *req.Template
	}
	tmpl.IdempotencyKey = ""
	p := plan{report: job.Report{Kind: job.KindGenerate, Records: req.Count}}
	for n := 1; n <= req.Count; n++ {
		t := tmpl
		t.Name = fmt.Sprintf("%s%0*d", req.NamePrefix, width, n)
		id, err := registry.NewID()
		if err != nil {
			return plan{}, err
		}
		u, err := registry.NewUser(t, id, now)
		if err != nil {
			if n == 1 {
				// The template itself is wrong: say so once.
				return plan{}, errs.Wrap(errs.Invalid, err, "template")
			}
			return plan{}, err
		}
		if other, taken := idx.ByName(t.Name); taken {
			p.report.Invalid++
			p.report.Problems = append(p.report.Problems, job.Problem{Record: n, Name: t.Name, Field: "name", Rule: "is taken by user " + other.ID})
			continue
		}
		p.report.Valid++
		p.items = append(p.items, Item{N: n, Action: actCreate, Name: u.Name, ID: u.ID, User: &u})
	}
	return p, nil
}

// parseExtend reads a Go duration or a whole number of days ("30d").
func parseExtend(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 36500 {
			return 0, errs.Field("extend_by", "days must be 1-36500")
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, errs.Field("extend_by", "must be a positive duration (720h) or days (30d)")
	}
	return d, nil
}

// planFilter checks the parameters of a change by filter and selects the
// users it applies to, as the index sees them now.
func planFilter(req job.CreateRequest, idx *index.Index, nodeGroups []string, now time.Time) (plan, error) {
	var fe []errs.FieldError
	add := func(field, rule string) { fe = append(fe, errs.FieldError{Field: field, Rule: rule}) }
	var prm Params
	if req.Filter == nil {
		add("filter", "must be set for a change by filter")
	}
	f := job.Filter{}
	if req.Filter != nil {
		f = *req.Filter
	}
	if req.Filter != nil && f.Empty() {
		add("filter", "must name at least one condition (status, protocol, node, name_prefix, expires_before, usage_above)")
	}
	if f.Status != "" && !slices.Contains(user.Statuses, f.Status) {
		add("filter.status", "must be active, disabled, limited, expired or on_hold")
	}
	if f.Protocol != "" && !protocol.Known(f.Protocol) {
		add("filter.protocol", "must be one of "+protocol.List())
	}
	if f.Node != "" && !subject.ValidToken(f.Node) {
		add("filter.node", "must be a node id")
	}
	if f.UsageAbove < 0 {
		add("filter.usage_above", "must not be negative")
	}
	switch req.Kind {
	case job.KindSetExpiry:
		if req.ExpiresAt.IsZero() {
			add("expires_at", "must be set")
		}
		prm.ExpiresAt = req.ExpiresAt.UTC()
	case job.KindExtend:
		d, err := parseExtend(req.ExtendBy)
		if err != nil {
			fe = append(fe, errs.FieldsOf(err)...)
		}
		prm.ExtendBy = d
	case job.KindSetLimit:
		if req.TrafficLimitBytes == nil || *req.TrafficLimitBytes < 0 {
			add("traffic_limit_bytes", "must be set, 0 (unlimited) or more")
		} else {
			prm.TrafficLimitBytes = *req.TrafficLimitBytes
		}
	case job.KindRotate:
		for _, p := range req.Protocols {
			if !protocol.Known(p) {
				add("protocols", fmt.Sprintf("unknown protocol %q", p))
			}
		}
		prm.Protocols = req.Protocols
	case job.KindMove:
		if len(req.Nodes) == 0 {
			add("nodes", "must list at least one node")
		}
		for _, n := range req.Nodes {
			if !subject.ValidToken(n) {
				add("nodes", fmt.Sprintf("%q is not a node id", n))
			}
		}
		prm.Nodes = slices.Compact(slices.Sorted(slices.Values(req.Nodes)))
	}
	if err := errs.Fields(fe...); err != nil {
		return plan{}, err
	}
	uf := user.Filter{Status: f.Status, Protocol: f.Protocol, NamePrefix: f.NamePrefix, Node: f.Node, NodeGroups: nodeGroups}
	lprefix := strings.ToLower(f.NamePrefix)
	var users []user.User
	idx.Each(func(u user.User) bool {
		if !index.Match(&u, uf, lprefix) {
			return true
		}
		if !f.ExpiresBefore.IsZero() && (u.ExpiresAt.IsZero() || !u.ExpiresAt.Before(f.ExpiresBefore)) {
			return true
		}
		if f.UsageAbove > 0 && u.Usage.Used() <= f.UsageAbove {
			return true
		}
		users = append(users, u)
		return true
	})
	if len(users) == 0 {
		return plan{}, errs.WithCode(errs.Field("filter", "matches no users; nothing to do"), errs.CodeFilterMatchesNothing)
	}
	slices.SortFunc(users, func(a, b user.User) int { return strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	p := plan{params: prm, report: job.Report{Kind: req.Kind, Records: len(users), Valid: len(users)}}
	act := actEdit
	if req.Kind == job.KindDelete {
		act = actDelete
	}
	for i, u := range users {
		p.items = append(p.items, Item{N: i + 1, Action: act, Name: u.Name, ID: u.ID})
	}
	return p, nil
}
