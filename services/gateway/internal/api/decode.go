package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/openapi"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// DecodeJSON decodes one JSON value of type T from body, read up to limit
// bytes, refusing unknown fields, keys sent twice in one object (encoding/json
// would keep the last, so two readers of one body could disagree), trailing
// data and media types other than JSON. Every request body goes through it,
// and every failure is a Problem with a precise code: this is where bad
// input stops, before anything is sent on NATS.
func DecodeJSON[T any](body io.Reader, contentType string, limit int64) (T, error) {
	var v T
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return v, problem.WithStatus(http.StatusUnsupportedMediaType, errs.Invalid, problem.CodeUnsupportedMedia,
			fmt.Sprintf("the body must be application/json, not %q", contentType),
			"send the body as JSON with 'Content-Type: application/json'")
	}
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return v, tooLarge(limit)
		}
		return v, problem.New(errs.Invalid, problem.CodeMalformedJSON, "the body cannot be read: "+err.Error(), "send the body again")
	}
	if int64(len(data)) > limit {
		return v, tooLarge(limit)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, decodeProblem(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return v, problem.New(errs.Invalid, problem.CodeMalformedJSON, "the body holds more than one JSON value",
			"send exactly one JSON object")
	}
	if path, key := duplicateKey(data); key != "" {
		p := problem.Fields(problem.CodeDuplicateField, errs.FieldError{Field: path, Rule: "must appear once in its object"})
		p.Detail = fmt.Sprintf("key %q is sent more than once in one object (keys differing only in case name the same field)", key)
		p.Hint = "send each field once"
		return v, p
	}
	return v, nil
}

// duplicateKey finds the first key of data that repeats a key of the same
// object, compared as encoding/json matches fields (ignoring case), and
// returns its path ("placement.nodes", "inbounds[1].port") and the key as
// sent; key is "" when every key is unique. data is valid JSON.
func duplicateKey(data []byte) (path, key string) {
	type frame struct {
		object    bool
		keys      map[string]bool
		key       string // the object's current key
		index     int    // the array's current index
		expectKey bool
	}
	var stack []*frame
	where := func(last string) string {
		var b strings.Builder
		for _, f := range stack {
			if !f.object {
				fmt.Fprintf(&b, "[%d]", f.index)
				continue
			}
			k := f.key
			if f == stack[len(stack)-1] {
				k = last
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		}
		return b.String()
	}
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		if f := stack[len(stack)-1]; f.object {
			f.expectKey = true
		} else {
			f.index++
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", "" // the end, or an error the decoder proper reports
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, expectKey: true})
			case '[':
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
				if len(stack) == 0 {
					return "", ""
				}
			}
		case string:
			if f := len(stack); f > 0 && stack[f-1].object && stack[f-1].expectKey {
				top := stack[f-1]
				folded := strings.ToLower(t)
				if top.keys[folded] {
					return where(t), t
				}
				top.keys[folded], top.key, top.expectKey = true, t, false
				continue
			}
			valueDone()
		default:
			valueDone()
		}
	}
}

func tooLarge(limit int64) error {
	return problem.WithStatus(http.StatusRequestEntityTooLarge, errs.Invalid, problem.CodeBodyTooLarge,
		fmt.Sprintf("the body is larger than %d bytes", limit),
		"send a smaller body; bulk changes belong in jobs")
}

var unknownField = regexp.MustCompile(`^json: unknown field "(.*)"$`)

func decodeProblem(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tpe *time.ParseError
	switch {
	case errors.Is(err, io.EOF):
		return problem.New(errs.Invalid, problem.CodeEmptyBody, "the body is empty", "send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(errs.Invalid, problem.CodeMalformedJSON, "the JSON body ends early", "send complete, valid JSON")
	case errors.As(err, &syn):
		return problem.New(errs.Invalid, problem.CodeMalformedJSON,
			fmt.Sprintf("the body is not valid JSON at byte %d: %v", syn.Offset, syn), "send valid JSON")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		p := problem.Fields(problem.CodeWrongType, errs.FieldError{Field: field, Rule: "must be " + jsonKind(typ.Type.Kind().String())})
		p.Detail = fmt.Sprintf("field %s has the wrong type (got a JSON %s)", field, typ.Value)
		return p
	case errors.As(err, &tpe):
		return problem.Fields(problem.CodeWrongType, errs.FieldError{Field: "(time)", Rule: "must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"})
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		p := problem.Fields(problem.CodeUnknownField, errs.FieldError{Field: m[1], Rule: "is not a field of this request"})
		p.Detail = fmt.Sprintf("unknown field %q", m[1])
		p.Hint = "remove the field; the API description at /api/v1/openapi.json lists the fields"
		return p
	}
	return problem.New(errs.Invalid, problem.CodeMalformedJSON, "the body cannot be decoded: "+err.Error(), "send valid JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "float32", "float64":
		return "a number"
	}
	if strings.HasPrefix(goKind, "int") || strings.HasPrefix(goKind, "uint") {
		return "an integer"
	}
	return "a " + goKind
}

// body decodes the request body of r into T; with optional set, an absent
// body is the zero T.
func body[T any](s *Server, r *http.Request, optional bool) (T, error) {
	var zero T
	if optional && r.ContentLength == 0 {
		return zero, nil
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return zero, tooLarge(s.cfg.MaxBodyBytes)
	}
	return DecodeJSON[T](r.Body, r.Header.Get("Content-Type"), s.cfg.MaxBodyBytes)
}

// checkQuery refuses query parameters a route does not take.
func checkQuery(q url.Values, allowed []openapi.Param) error {
	var fe []errs.FieldError
	for k := range q {
		if !slices.ContainsFunc(allowed, func(p openapi.Param) bool { return p.Name == k }) {
			fe = append(fe, errs.FieldError{Field: k, Rule: "is not a parameter of this route"})
		}
	}
	if len(fe) == 0 {
		return nil
	}
	slices.SortFunc(fe, func(a, b errs.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return problem.Fields(problem.CodeInvalidQuery, fe...)
}

// queryInt reads an integer query parameter within [lo, hi].
func queryInt(q url.Values, name string, lo, hi, def int, fe *[]errs.FieldError) int {
	s := q.Get(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		*fe = append(*fe, errs.FieldError{Field: name, Rule: fmt.Sprintf("must be an integer %d-%d", lo, hi)})
		return def
	}
	return n
}

// queryBool reads a boolean query parameter.
func queryBool(q url.Values, name string, fe *[]errs.FieldError) bool {
	s := q.Get(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		*fe = append(*fe, errs.FieldError{Field: name, Rule: "must be true or false"})
	}
	return b
}

// queryEnum reads a parameter that must be one of values.
func queryEnum[T ~string](q url.Values, name string, values []T, fe *[]errs.FieldError) T {
	s := q.Get(name)
	if s == "" {
		return ""
	}
	if !slices.Contains(values, T(s)) {
		names := make([]string, len(values))
		for i, v := range values {
			names[i] = string(v)
		}
		*fe = append(*fe, errs.FieldError{Field: name, Rule: "must be one of " + strings.Join(names, ", ")})
		return ""
	}
	return T(s)
}

// pathRules check path values before they are used in a subject or key.
var pathRules = map[string]func(string) bool{
	"user":      subject.ValidToken,
	"node":      subject.ValidToken,
	"server_id": subject.ValidToken,
	"job":       subject.ValidToken,
	"alert":     subject.ValidToken,
	"id":        auth.ValidID,
}

func checkPath(r *http.Request, names []string) error {
	var fe []errs.FieldError
	for _, n := range names {
		ok, has := pathRules[n]
		if has && !ok(r.PathValue(n)) {
			fe = append(fe, errs.FieldError{Field: n, Rule: pathRule(n)})
		}
	}
	if len(fe) == 0 {
		return nil
	}
	p := problem.Fields(problem.CodeInvalidPath, fe...)
	p.Detail = "a path segment is not a valid name or id"
	return p
}

func pathRule(name string) string {
	if name == "id" {
		return "must be a token id: 12 hex digits"
	}
	return "must be 1-128 characters of A-Z a-z 0-9 _ -"
}
