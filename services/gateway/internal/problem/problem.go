// Package problem writes the gateway's errors as RFC 9457 problem details
// (application/problem+json): a stable machine-readable code, the rejected
// fields, and a hint that tells the caller what to do next. Errors classed
// by package errs map to a status through errs.HTTPStatus, the one mapper;
// conditions only HTTP has (a body too large, a wrong content type, too
// many requests) are Problems made here with their own status.
package problem

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypePrefix prefixes a problem's code to make its type URI.
const TypePrefix = "urn:vpnfleet:problem:"

// Stable problem codes. The class names of package errs (not_found,
// invalid, conflict, unavailable, unauthorized, forbidden, internal) are
// codes too; the ones below say more precisely what went wrong.
const (
	CodeMalformedJSON    = "malformed_json"
	CodeUnknownField     = "unknown_field"
	CodeDuplicateField   = "duplicate_field"
	CodeWrongType        = "wrong_type"
	CodeEmptyBody        = "empty_body"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeInvalidPath      = "invalid_path"
	CodeInvalidQuery     = "invalid_query"
	CodeTokenMissing     = "token_missing"
	CodeTokenInvalid     = "token_invalid"
	CodeTokenRevoked     = "token_revoked"
	CodeTokenExpired     = "token_expired"
	CodeRateLimited      = "rate_limited"
	CodeTooManyStreams   = "too_many_streams"
	CodeRouteNotFound    = "route_not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotAcceptable    = "not_acceptable"
	// CodeIdempotencyKeyReused: an Idempotency-Key sent again with another
	// body (422).
	CodeIdempotencyKeyReused = "idempotency_key_reused"
	// Bulk jobs.
	CodeMalformedForm        = "malformed_form"
	CodeFileTooLarge         = "file_too_large"
	CodeInvalidRecords       = errs.CodeInvalidRecords
	CodeFilterMatchesNothing = errs.CodeFilterMatchesNothing
)

// Codes lists every code a problem may carry, for the API description.
var Codes = []string{
	errs.Invalid.String(), errs.NotFound.String(), errs.Conflict.String(), errs.Unavailable.String(),
	errs.Unauthorized.String(), errs.Forbidden.String(), errs.Internal.String(),
	CodeMalformedJSON, CodeUnknownField, CodeDuplicateField, CodeWrongType, CodeEmptyBody, CodeBodyTooLarge,
	CodeUnsupportedMedia, CodeInvalidPath, CodeInvalidQuery, CodeTokenMissing, CodeTokenInvalid,
	CodeTokenRevoked, CodeTokenExpired, CodeRateLimited, CodeTooManyStreams, CodeRouteNotFound, CodeMethodNotAllowed,
	CodeNotAcceptable, CodeIdempotencyKeyReused, CodeMalformedForm, CodeFileTooLarge, CodeInvalidRecords, CodeFilterMatchesNothing,
}

// Problem is one problem document. It is an error too, so handlers return
// it like any other; Class lets callers test it with errors.Is.
type Problem struct {
	Type     string            `json:"type"`
	Title    string            `json:"title"`
	Status   int               `json:"status"`
	Detail   string            `json:"detail,omitempty"`
	Instance string            `json:"instance,omitempty"`
	Code     string            `json:"code"`
	Hint     string            `json:"hint,omitempty"`
	Errors   []errs.FieldError `json:"errors,omitempty"`
	// Service names the upstream service that did not answer.
	Service   string `json:"service,omitempty"`
	RequestID string `json:"request_id,omitempty"`

	Class errs.Class `json:"-"`
	// RetryAfter, in seconds, is sent as the Retry-After header.
	RetryAfter int `json:"-"`
}

// Error returns the code and the detail.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.Code)
	if p.Detail != "" {
		b.WriteString(": " + p.Detail)
	}
	for _, f := range p.Errors {
		b.WriteString("; " + f.String())
	}
	return b.String()
}

// Is reports whether target is the problem's class.
func (p *Problem) Is(target error) bool {
	c, ok := target.(errs.Class)
	return ok && c == p.Class
}

// New returns a problem of class c whose status is errs.HTTPStatus(c).
func New(c errs.Class, code, detail, hint string) *Problem {
	return &Problem{Class: c, Status: errs.HTTPStatus(c), Code: code, Detail: detail, Hint: hint}
}

// WithStatus returns a problem with a status no class maps to (413, 415,
// 429, ...); c still says how a client should treat it.
func WithStatus(status int, c errs.Class, code, detail, hint string) *Problem {
	return &Problem{Class: c, Status: status, Code: code, Detail: detail, Hint: hint}
}

// Fields returns an invalid-input problem with code listing fields.
func Fields(code string, fields ...errs.FieldError) *Problem {
	p := New(errs.Invalid, code, "invalid input", hints[errs.Invalid])
	p.Errors = fields
	return p
}

// hints say what to do about each class.
var hints = map[errs.Class]string{
	errs.Invalid:      "fix the fields listed in errors and send the request again",
	errs.NotFound:     "check the id or name; list what exists (e.g. GET /api/v1/users)",
	errs.Conflict:     "read the resource again and retry against its current state or revision",
	errs.Unavailable:  "a service behind the gateway is not answering; check that it runs (`make run` starts vpnd with every service) and retry",
	errs.Unauthorized: "send a valid API token as 'Authorization: Bearer <token>' (vpn login --token ...)",
	errs.Forbidden:    "use a token with a role that allows this (admin > operator > viewer)",
	errs.Internal:     "this is a bug in vpnfleet; retry, and report it with the request id if it persists",
}

// Hint returns the hint of class c.
func Hint(c errs.Class) string { return hints[c] }

// From turns any error into a problem: a Problem as it is, a classified
// error by its class (errs.HTTPStatus), anything else as internal.
func From(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		cp := *p
		if cp.Hint == "" {
			cp.Hint = hints[cp.Class]
		}
		return &cp
	}
	c := errs.ClassOf(err)
	detail := errs.Message(err)
	if c == errs.Internal {
		detail = "internal error"
	}
	out := New(c, c.String(), detail, hints[c])
	out.Errors = errs.FieldsOf(err)
	return out
}

// Write writes err as a problem document for request r.
func Write(w http.ResponseWriter, r *http.Request, requestID string, err error) *Problem {
	p := From(err)
	p.Type = TypePrefix + p.Code
	p.Title = http.StatusText(p.Status)
	p.Instance = r.URL.Path
	p.RequestID = requestID
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="vpnfleet"`)
	}
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(p)
	}
	return p
}
