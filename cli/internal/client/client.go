// Package client is the vpn CLI's thin HTTP client of the gateway: JSON in
// and out, the API token as a bearer header, and errors that say what to
// do: a refused connection names vpnd, a 401 says to log in, a problem
// document lists its fields and carries the gateway's hint.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/vpnfleet/vpnfleet/cli/internal/output"
)

// Client talks to one gateway.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
	// UserAgent is sent with every request.
	UserAgent string
}

// New returns a client of the gateway at baseURL.
func New(baseURL, token, userAgent string) *Client {
	return &Client{
		BaseURL:   strings.TrimSuffix(baseURL, "/"),
		Token:     token,
		HTTP:      &http.Client{Timeout: 0},
		UserAgent: userAgent,
	}
}

// FieldError is one rejected field of a problem.
type FieldError struct {
	Field string `json:"field"`
	Rule  string `json:"rule"`
}

// Problem is the gateway's error document (RFC 9457).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Code      string       `json:"code"`
	Hint      string       `json:"hint"`
	Service   string       `json:"service"`
	RequestID string       `json:"request_id"`
	Errors    []FieldError `json:"errors"`
}

// APIError is a refusal from the gateway.
type APIError struct {
	Status  int
	Problem Problem
}

// Error says what failed and what to do. The gateway's text (which may
// echo input) is escaped, so it cannot drive the terminal that prints it.
func (e *APIError) Error() string {
	var b strings.Builder
	p := e.Problem
	msg := p.Detail
	if msg == "" {
		msg = p.Title
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	b.WriteString(output.Escape(msg))
	for _, f := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", output.Escape(f.Field), output.Escape(f.Rule))
	}
	hint := p.Hint
	if e.Status == http.StatusUnauthorized {
		hint = "run `vpn login --url <gateway> --token <token>` (vpnd wrote the first admin token to <data dir>/admin.token)"
		if p.Code == "token_revoked" || p.Code == "token_expired" {
			hint = "ask an admin for a new token (`vpn tokens create`), then run `vpn login`"
		}
	}
	if hint != "" {
		b.WriteString("\nhint: " + output.Escape(hint))
	}
	return b.String()
}

// ConnError is a gateway that cannot be reached.
type ConnError struct {
	URL string
	Err error
}

func (e *ConnError) Error() string {
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return fmt.Sprintf("cannot connect to %s: connection refused\nhint: is vpnd running? start it with `make run` (or point --url / VPN_URL at your gateway)", e.URL)
	}
	var dns *net.DNSError
	if errors.As(e.Err, &dns) {
		return fmt.Sprintf("cannot resolve %s: %v\nhint: check --url / VPN_URL (vpn login --url ...)", e.URL, dns)
	}
	return fmt.Sprintf("cannot reach %s: %v\nhint: is vpnd running? start it with `make run`", e.URL, e.Err)
}

func (e *ConnError) Unwrap() error { return e.Err }

// Request is one call.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Body   any
	// Raw, with ContentType, is sent as the body as it is (a multipart
	// upload) when Body is nil.
	Raw         []byte
	ContentType string
	Header      http.Header
}

// Send performs r and returns the response when its status is 2xx; other
// statuses become an *APIError. The caller closes the body.
func (c *Client) Send(ctx context.Context, r Request) (*http.Response, error) {
	var rd io.Reader
	if r.Body != nil {
		data, err := json.Marshal(r.Body)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(data)
	} else if r.Raw != nil {
		rd = bytes.NewReader(r.Raw)
	}
	u := c.BaseURL + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("building request %s %s: %w", r.Method, u, err)
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	} else if r.Raw != nil {
		req.Header.Set("Content-Type", r.ContentType)
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &ConnError{URL: c.BaseURL, Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, &e.Problem) != nil || e.Problem.Code == "" {
		e.Problem = Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(data))}
	}
	return nil, e
}

// Do performs r and decodes a JSON reply into out (when not nil).
func (c *Client) Do(ctx context.Context, r Request, out any) error {
	resp, err := c.Send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding reply of %s %s: %w", r.Method, r.Path, err)
	}
	return nil
}

// Get is Do for a GET.
func (c *Client) Get(ctx context.Context, path string, q url.Values, out any) error {
	return c.Do(ctx, Request{Method: http.MethodGet, Path: path, Query: q}, out)
}

// Bytes performs r and returns the raw body (a PNG, a subscription).
func (c *Client) Bytes(ctx context.Context, r Request) ([]byte, error) {
	resp, err := c.Send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Event is one Server-Sent Event.
type Event struct {
	ID   string
	Type string
	Data string
}

// Events streams the gateway's events to fn until ctx ends, the stream
// ends, or fn returns false.
func (c *Client) Events(ctx context.Context, q url.Values, lastID string, fn func(Event) bool) error {
	return c.Stream(ctx, "/api/v1/events", q, lastID, fn)
}

// Stream reads the event stream at path (resuming after lastID when set)
// and passes each event to fn until ctx ends, the stream ends, or fn
// returns false. A 204 is a stream with nothing more to say.
func (c *Client) Stream(ctx context.Context, path string, q url.Values, lastID string, fn func(Event) bool) error {
	h := http.Header{"Accept": {"text/event-stream"}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	resp, err := c.Send(ctx, Request{Method: http.MethodGet, Path: path, Query: q, Header: h})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return readEvents(resp.Body, fn)
}

func readEvents(r io.Reader, fn func(Event) bool) error {
	br := newLineReader(r)
	var e Event
	for {
		line, err := br.line()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		switch {
		case line == "":
			if e.Data != "" && !fn(e) {
				return nil
			}
			e = Event{}
		case strings.HasPrefix(line, "id:"):
			e.ID = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			e.Type = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			e.Data += strings.TrimPrefix(line[5:], " ")
		}
	}
}

// Wait polls cond every interval until it returns true or an error, or
// until timeout.
func Wait(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
