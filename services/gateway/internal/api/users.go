package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// UpdateUserRequest is the body of PATCH /api/v1/users/{user}: the fields
// that are set change (see user.UpdateRequest); the user comes from the
// path.
type UpdateUserRequest struct {
	ExpectedRevision  uint64           `json:"expected_revision,omitempty"`
	Name              *string          `json:"name,omitempty"`
	Email             *string          `json:"email,omitempty"`
	Note              *string          `json:"note,omitempty"`
	Status            *user.Status     `json:"status,omitempty"`
	OnHoldDays        *int             `json:"on_hold_days,omitempty"`
	Protocols         *[]user.Protocol `json:"protocols,omitempty"`
	TrafficLimitBytes *int64           `json:"traffic_limit_bytes,omitempty"`
	LimitReset        *user.LimitReset `json:"limit_reset,omitempty"`
	ExpiresAt         *time.Time       `json:"expires_at,omitempty"`
	ClearExpiresAt    bool             `json:"clear_expires_at,omitempty"`
	Placement         *user.Placement  `json:"placement,omitempty"`
}

// RevisionBody is the optional body of calls that change one user or
// server: the revision the change must apply to.
type RevisionBody struct {
	ExpectedRevision uint64 `json:"expected_revision,omitempty"`
}

// RotateBody is the optional body of a credential rotation.
type RotateBody struct {
	ExpectedRevision uint64          `json:"expected_revision,omitempty"`
	Protocols        []user.Protocol `json:"protocols,omitempty"`
}

// maxIdempotencyKey is the longest Idempotency-Key a client may send.
const maxIdempotencyKey = 256

// idempotencyKey returns the client's key of a create, from the body's
// idempotency_key or else the Idempotency-Key header, and the field it
// came in.
func idempotencyKey(r *http.Request, inBody string) (field, key string) {
	if inBody != "" {
		return "idempotency_key", inBody
	}
	return "Idempotency-Key", r.Header.Get("Idempotency-Key")
}

// nameRule is the users service's rule for names, checked here too so a
// malformed name never travels.
const nameRule = "must be 3-32 characters of A-Z a-z 0-9 _ -"

func validName(s string) bool { return len(s) >= 3 && len(s) <= 32 && subject.ValidToken(s) }

// ValidateCreate checks the shape of a create request.
func ValidateCreate(req user.CreateRequest) error {
	var fe []errs.FieldError
	if !validName(req.Name) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: nameRule})
	}
	if req.Status != "" && !slices.Contains([]user.Status{user.StatusActive, user.StatusDisabled, user.StatusOnHold}, req.Status) {
		fe = append(fe, errs.FieldError{Field: "status", Rule: "must be active, disabled or on_hold"})
	}
	fe = checkProtocols(fe, req.Protocols)
	if req.TrafficLimitBytes < 0 {
		fe = append(fe, errs.FieldError{Field: "traffic_limit_bytes", Rule: "must not be negative (0 is unlimited)"})
	}
	if req.OnHoldDays < 0 {
		fe = append(fe, errs.FieldError{Field: "on_hold_days", Rule: "must not be negative"})
	}
	if req.LimitReset != "" && !slices.Contains(user.LimitResets, req.LimitReset) {
		fe = append(fe, errs.FieldError{Field: "limit_reset", Rule: "must be none, day, week, month or year"})
	}
	return errs.Fields(fe...)
}

// ValidateUpdate checks the shape of an update request.
func ValidateUpdate(req UpdateUserRequest) error {
	var fe []errs.FieldError
	if req.Name != nil && !validName(*req.Name) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: nameRule})
	}
	if req.Status != nil && !slices.Contains(user.Statuses, *req.Status) {
		fe = append(fe, errs.FieldError{Field: "status", Rule: "must be one of " + strings.Join(enum(user.Statuses), ", ")})
	}
	if req.Protocols != nil {
		fe = checkProtocols(fe, *req.Protocols)
	}
	if req.TrafficLimitBytes != nil && *req.TrafficLimitBytes < 0 {
		fe = append(fe, errs.FieldError{Field: "traffic_limit_bytes", Rule: "must not be negative (0 is unlimited)"})
	}
	if req.OnHoldDays != nil && *req.OnHoldDays < 0 {
		fe = append(fe, errs.FieldError{Field: "on_hold_days", Rule: "must not be negative"})
	}
	if req.LimitReset != nil && !slices.Contains(user.LimitResets, *req.LimitReset) {
		fe = append(fe, errs.FieldError{Field: "limit_reset", Rule: "must be none, day, week, month or year"})
	}
	if req.ClearExpiresAt && req.ExpiresAt != nil {
		fe = append(fe, errs.FieldError{Field: "clear_expires_at", Rule: "must not be set together with expires_at"})
	}
	return errs.Fields(fe...)
}

func checkProtocols(fe []errs.FieldError, ps []user.Protocol) []errs.FieldError {
	for _, p := range ps {
		if !protocol.Known(p) {
			return append(fe, errs.FieldError{Field: "protocols", Rule: "each must be one of " + strings.Join(enum(protocol.Names()), ", ")})
		}
	}
	return fe
}

// ListQuery reads the query of GET /api/v1/users.
func ListQuery(q url.Values) (user.ListRequest, error) {
	var fe []errs.FieldError
	req := user.ListRequest{
		Filter: user.Filter{
			Status:     queryEnum(q, "status", user.Statuses, &fe),
			Protocol:   queryEnum(q, "protocol", protocol.Names(), &fe),
			NamePrefix: q.Get("name_prefix"),
			Node:       q.Get("node"),
		},
		Sort:   queryEnum(q, "sort", []string{"name", "-name", "created_at", "-created_at"}, &fe),
		Cursor: q.Get("cursor"),
		Limit:  queryInt(q, "limit", 1, 1000, 100, &fe),
	}
	if len(req.NamePrefix) > 32 {
		fe = append(fe, errs.FieldError{Field: "name_prefix", Rule: "must be at most 32 characters"})
	}
	if req.Node != "" && !subject.ValidToken(req.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: "must be a node id"})
	}
	if len(req.Cursor) > 1024 {
		fe = append(fe, errs.FieldError{Field: "cursor", Rule: "must be a next_cursor from a previous page"})
	}
	if len(fe) > 0 {
		return req, problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	return req, nil
}

// isUUID reports whether s looks like a user id (names cannot: they are
// at most 32 characters).
func isUUID(s string) bool {
	return len(s) == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-'
}

// resolveUser finds the user named by the {user} path value: an id or a
// name.
func (s *Server) resolveUser(r *http.Request) (user.User, error) {
	ref := r.PathValue("user")
	req := user.GetRequest{Name: ref}
	if isUUID(ref) {
		req = user.GetRequest{ID: ref}
	}
	setTarget(r, "user", ref)
	u, err := call[user.User](s, r, subject.UsersCmd(subject.UsersGet), req)
	if err != nil {
		return u, err
	}
	setTarget(r, "user", u.Name)
	return u, nil
}

// present hides credentials from viewers.
func present(r *http.Request, u user.User) user.User {
	if role(r) == auth.Viewer {
		return u.Redacted()
	}
	return u
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	req, err := ListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	resp, err := call[user.ListResponse](s, r, subject.UsersCmd(subject.UsersList), req)
	if err != nil {
		return err
	}
	for i := range resp.Users {
		resp.Users[i] = present(r, resp.Users[i])
	}
	if resp.Users == nil {
		resp.Users = []user.User{}
	}
	if resp.NextCursor != "" {
		q := r.URL.Query()
		q.Set("cursor", resp.NextCursor)
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", r.URL.Path, q.Encode()))
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	req, err := body[user.CreateRequest](s, r, false)
	if err != nil {
		return err
	}
	if req.Name != "" {
		setTarget(r, "user", req.Name)
	}
	field, key := idempotencyKey(r, req.IdempotencyKey)
	if len(key) > maxIdempotencyKey {
		return problem.Fields(errs.Invalid.String(), errs.FieldError{Field: field, Rule: fmt.Sprintf("must be at most %d characters", maxIdempotencyKey)})
	}
	req.IdempotencyKey = ""
	if err := ValidateCreate(req); err != nil {
		return err
	}
	done := func(error) {}
	if key != "" {
		if req.IdempotencyKey, done, err = s.idempotent(r, "users.create", field, key, req); err != nil {
			return err
		}
	}
	u, err := call[user.User](s, r, subject.UsersCmd(subject.UsersCreate), req)
	done(err)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	return writeJSON(w, http.StatusCreated, u)
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, present(r, u))
}

func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) error {
	b, err := body[UpdateUserRequest](s, r, false)
	if err != nil {
		return err
	}
	if err := ValidateUpdate(b); err != nil {
		return err
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	req := user.UpdateRequest{
		ID: u.ID, ExpectedRevision: b.ExpectedRevision, Name: b.Name, Email: b.Email, Note: b.Note,
		Status: b.Status, OnHoldDays: b.OnHoldDays, Protocols: b.Protocols, TrafficLimitBytes: b.TrafficLimitBytes,
		LimitReset: b.LimitReset, ExpiresAt: b.ExpiresAt, ClearExpiresAt: b.ClearExpiresAt, Placement: b.Placement,
	}
	out, err := call[user.User](s, r, subject.UsersCmd(subject.UsersUpdate), req)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// revisionCall decodes an optional RevisionBody, resolves the user and
// calls endpoint with a user.RevisionRequest.
func revisionCall[Resp any](s *Server, w http.ResponseWriter, r *http.Request, endpoint string) error {
	b, err := body[RevisionBody](s, r, true)
	if err != nil {
		return err
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	resp, err := call[Resp](s, r, subject.UsersCmd(endpoint), user.RevisionRequest{ID: u.ID, ExpectedRevision: b.ExpectedRevision})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	return revisionCall[user.DeleteResponse](s, w, r, subject.UsersDelete)
}

func (s *Server) setEnabled(enabled bool) func(http.ResponseWriter, *http.Request) error {
	endpoint := subject.UsersDisable
	if enabled {
		endpoint = subject.UsersEnable
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		return revisionCall[user.User](s, w, r, endpoint)
	}
}

func (s *Server) resetTraffic(w http.ResponseWriter, r *http.Request) error {
	return revisionCall[user.User](s, w, r, subject.UsersResetTraffic)
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) error {
	b, err := body[RotateBody](s, r, true)
	if err != nil {
		return err
	}
	if fe := checkProtocols(nil, b.Protocols); len(fe) > 0 {
		return errs.Fields(fe...)
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	out, err := call[user.User](s, r, subject.UsersCmd(subject.UsersRotate), user.RotateRequest{ID: u.ID, ExpectedRevision: b.ExpectedRevision, Protocols: b.Protocols})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// healthyFor returns the nodes links may use: the healthy ones, or every
// node (nil) when all=true.
func (s *Server) healthyFor(ctx context.Context, all bool) ([]string, error) {
	if all {
		return nil, nil
	}
	return s.healthyNodes(ctx)
}

func (s *Server) links(w http.ResponseWriter, r *http.Request) error {
	var fe []errs.FieldError
	all := queryBool(r.URL.Query(), "all", &fe)
	if len(fe) > 0 {
		return problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	healthy, err := s.healthyFor(r.Context(), all)
	if err != nil {
		return err
	}
	resp, err := call[user.LinksResponse](s, r, subject.UsersCmd(subject.UsersLinks), user.LinksRequest{ID: u.ID, HealthyNodes: healthy})
	if err != nil {
		return err
	}
	if resp.Links == nil {
		resp.Links = []user.Link{}
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (s *Server) qr(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var fe []errs.FieldError
	proto := queryEnum(q, "protocol", protocol.Names(), &fe)
	size := queryInt(q, "size", 64, 1024, 256, &fe)
	format := queryEnum(q, "format", []string{"png", "text"}, &fe)
	srv := q.Get("server")
	if srv != "" && !subject.ValidToken(srv) {
		fe = append(fe, errs.FieldError{Field: "server", Rule: "must be a server id"})
	}
	if len(fe) > 0 {
		return problem.Fields(problem.CodeInvalidQuery, fe...)
	}
	if format == "" {
		format = "png"
		if accepts(r, "text/plain") && !accepts(r, "image/png") {
			format = "text"
		}
	}
	u, err := s.resolveUser(r)
	if err != nil {
		return err
	}
	healthy, err := s.healthyNodes(r.Context())
	if err != nil {
		return err
	}
	links, err := call[user.LinksResponse](s, r, subject.UsersCmd(subject.UsersLinks), user.LinksRequest{ID: u.ID, HealthyNodes: healthy})
	if err != nil {
		return err
	}
	i := slices.IndexFunc(links.Links, func(l user.Link) bool {
		return (srv == "" || l.Server == srv) && (proto == "" || l.Protocol == proto)
	})
	if i < 0 {
		return problem.New(errs.NotFound, errs.NotFound.String(), fmt.Sprintf("user %s has no matching link on a healthy node", u.Name),
			"deploy a server for the user's protocols (`vpn servers deploy`) and wait until its node applies it; `vpn users link "+u.Name+"` says why links are missing")
	}
	resp, err := call[user.QRResponse](s, r, subject.UsersCmd(subject.UsersQR), user.QRRequest{Content: links.Links[i].URL, Size: size})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	if format == "text" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, err = w.Write([]byte(resp.Text))
		return err
	}
	w.Header().Set("Content-Type", "image/png")
	_, err = w.Write(resp.PNG)
	return err
}

// accepts reports whether the Accept header names media type mt.
func accepts(r *http.Request, mt string) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		t, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(t, mt) {
			return true
		}
	}
	return false
}
