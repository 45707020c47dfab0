// Package errs is the project's one set of error classes. Every error that
// crosses a process boundary carries a Class, and each transport has exactly
// one mapper from Class to its own vocabulary: HTTP status (HTTPStatus), micro
// error code (Code / FromCode) and JetStream ack decision (in package bus).
//
// Callers test classes with errors.Is:
//
//	if errors.Is(err, errs.NotFound) { ... }
package errs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Class is the kind of failure. It is an error itself so that
// errors.Is(err, errs.Conflict) reads naturally.
type Class uint8

// The classes. Internal is the zero value on purpose: an error nobody
// classified is an internal error.
const (
	Internal     Class = iota // a bug or an unexpected condition; not the caller's fault
	NotFound                  // the thing named does not exist
	Invalid                   // the input breaks a rule; retrying it unchanged never helps
	Conflict                  // the input clashes with current state (taken name, stale revision)
	Unavailable               // a dependency is not answering; retrying later may help
	Unauthorized              // no or bad credentials
	Forbidden                 // good credentials, not allowed
)

var classNames = [...]string{
	Internal:     "internal",
	NotFound:     "not_found",
	Invalid:      "invalid",
	Conflict:     "conflict",
	Unavailable:  "unavailable",
	Unauthorized: "unauthorized",
	Forbidden:    "forbidden",
}

// String returns the stable snake_case name used on the wire.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "internal"
}

// Error makes a Class usable as a sentinel.
func (c Class) Error() string { return c.String() }

// ParseClass is the inverse of String; unknown names give Internal.
func ParseClass(s string) Class {
	for i, n := range classNames {
		if n == s {
			return Class(i)
		}
	}
	return Internal
}

// FieldError names one rejected input field and the rule it broke.
type FieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

func (f FieldError) String() string { return f.Field + ": " + f.Rule }

// Error is a classified error with a human message, optional field errors,
// an optional code and an optional cause.
type Error struct {
	Class Class
	// Code, when set, names the condition more precisely than the class,
	// in stable snake_case (CodeFilterMatchesNothing): what a caller
	// answers precisely, so that nobody matches message text, which may be
	// reworded any day. Package bus carries it across the wire.
	Code   string
	Msg    string
	Fields []FieldError
	Err    error
}

// Codes of conditions their callers answer precisely (the gateway gives
// each its own problem code and hint). Like a Class, a code is part of
// the wire contract: add new ones, never reword one.
const (
	// CodeFilterMatchesNothing: a bulk job's filter selects no user.
	CodeFilterMatchesNothing = "filter_matches_nothing"
	// CodeInvalidRecords: an import's records break rules; each field
	// error names the record ("line 3: email").
	CodeInvalidRecords = "invalid_records"
	// CodeNotReady: a dependency (NATS, a stream) did not become ready
	// within the time allowed, retried with backoff until then.
	CodeNotReady = "not_ready"
	// CodeInputTooLarge: a job's input is over the limit of the job
	// inputs store; the error names the limit.
	CodeInputTooLarge = "input_too_large"
	// CodeInputGone: a job's input is not (or no longer) in the job inputs
	// store, or its digest differs from the one the job names.
	CodeInputGone = "input_gone"
	// CodeUnsupported: the engine serving a server lacks an optional
	// capability the request needs (a stock Xray cannot end open
	// sessions); the rest of the request was done.
	CodeUnsupported = "unsupported"
	// CodeMessageTooLarge: a message is over the size its receiver
	// accepts (an engine's API, such as Xray's gRPC, or a reply over the
	// bus's max_payload); the error says how large it was. Retrying does not
	// help: the work must be split (a smaller page) or the limit raised.
	CodeMessageTooLarge = "message_too_large"
)

// WithCode returns err carrying code, keeping its class, message, fields
// and cause. A nil err gives nil.
func WithCode(err error, code string) error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		c := *e
		c.Code = code
		return &c
	}
	return &Error{Class: ClassOf(err), Code: code, Err: err}
}

// CodeOf returns the outermost code carried in err's chain ("" when none).
func CodeOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Code != "" {
			return e.Code
		}
		err = e.Err
	}
	return ""
}

// Error joins the message, the field errors and the cause.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Msg)
	for i, f := range e.Fields {
		if i == 0 && b.Len() > 0 {
			b.WriteString(": ")
		} else if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.String())
	}
	if e.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	if b.Len() == 0 {
		return e.Class.String()
	}
	return b.String()
}

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is this error's class.
func (e *Error) Is(target error) bool {
	c, ok := target.(Class)
	return ok && c == e.Class
}

// New returns an error of class c with a formatted message.
func New(c Class, format string, args ...any) error {
	return &Error{Class: c, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err, keeping it as the cause. A nil err gives nil.
func Wrap(c Class, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Class: c, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Fields returns an Invalid error listing every rejected field, or nil when
// fields is empty, so validators can collect and return in one line.
func Fields(fields ...FieldError) error {
	if len(fields) == 0 {
		return nil
	}
	return &Error{Class: Invalid, Msg: "invalid input", Fields: fields}
}

// Field is shorthand for a single-field Invalid error.
func Field(field, rule string) error { return Fields(FieldError{Field: field, Rule: rule}) }

// FieldsOf returns the field errors carried anywhere in err's chain.
func FieldsOf(err error) []FieldError {
	var e *Error
	if errors.As(err, &e) {
		if len(e.Fields) > 0 {
			return e.Fields
		}
		return FieldsOf(e.Err)
	}
	return nil
}

// ClassOf returns the class of the outermost classified error in err's
// chain. Context cancellation and deadlines are Unavailable; anything else
// unclassified is Internal. ClassOf(nil) is Internal and should not be asked.
func ClassOf(err error) Class {
	var c Class
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Class
	case errors.As(err, &c):
		return c
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return Unavailable
	}
	return Internal
}

// Message returns the human message of the outermost classified error, or
// err.Error() when there is none.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Msg != "" {
		return e.Msg
	}
	return err.Error()
}

// HTTPStatus is the one mapper from class to HTTP status.
func HTTPStatus(c Class) int {
	switch c {
	case NotFound:
		return http.StatusNotFound
	case Invalid:
		return http.StatusBadRequest
	case Conflict:
		return http.StatusConflict
	case Unavailable:
		return http.StatusServiceUnavailable
	case Unauthorized:
		return http.StatusUnauthorized
	case Forbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

// Code is the one mapper from class to a NATS micro error code. Codes are
// the HTTP status numbers so that they read the same everywhere.
func Code(c Class) string { return strconv.Itoa(HTTPStatus(c)) }

// FromCode is the inverse of Code, used by request clients to restore the
// class of a remote error.
func FromCode(code string) Class {
	n, err := strconv.Atoi(code)
	if err != nil {
		return Internal
	}
	switch n {
	case http.StatusNotFound:
		return NotFound
	case http.StatusBadRequest:
		return Invalid
	case http.StatusConflict:
		return Conflict
	case http.StatusServiceUnavailable:
		return Unavailable
	case http.StatusUnauthorized:
		return Unauthorized
	case http.StatusForbidden:
		return Forbidden
	}
	return Internal
}
