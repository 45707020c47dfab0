// Package api is the gateway's HTTP API: the route table (method, path,
// least role, body and response types), one wrapper that authenticates,
// rate-limits, authorises, validates paths and queries, writes errors as
// problems and audits every mutating call, and the handlers, which decode,
// ask a service over NATS with a timeout, and encode.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/install"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/openapi"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/sub"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// Config tunes the API; the gateway fills it from its flags.
type Config struct {
	// Version is reported by /api/v1/status and the API description.
	Version string
	// PublicURL is the base of subscription URLs handed to users; empty
	// derives it from each request's Host.
	PublicURL string
	// TrustedProxies are the peers whose X-Forwarded-Host and
	// X-Forwarded-Proto are believed when PublicURL is empty; nil: none.
	TrustedProxies []netip.Prefix
	// UpstreamTimeout bounds every request to a service over NATS.
	UpstreamTimeout time.Duration
	// JobTimeout bounds the start of a bulk job, which validates a whole
	// file (up to MaxImportBytes) before it answers.
	JobTimeout time.Duration
	// MaxImportBytes bounds an import file, which the gateway puts in the
	// job inputs object store.
	MaxImportBytes int64
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// RatePerSecond and RateBurst limit each API token; PublicRate* limit
	// each client address on public routes (subscriptions). <= 0: no limit.
	RatePerSecond       float64
	RateBurst           int
	PublicRatePerSecond float64
	PublicRateBurst     int
	// TokenCacheTTL is how long a token record is trusted before it is
	// read again (a revocation on another replica takes this long).
	TokenCacheTTL time.Duration
	// EventsPing is the keep-alive interval of event streams.
	EventsPing time.Duration
	// MaxStreamsPerToken caps the event streams one token holds open at
	// once (<= 0: no cap).
	MaxStreamsPerToken int
	// AuditWindow is the window refusals are summarised over in the audit
	// trail (<= 0: each refusal is recorded alone).
	AuditWindow time.Duration
	// BackupTrustDir is the embedded NATS server's trust directory that
	// backups carry (vpnd sets it); empty: backups hold the streams only.
	BackupTrustDir string
	// AgentBinaries is the directory /install/ serves binaries from; empty
	// is the running executable's.
	AgentBinaries string
}

// Server is the API.
type Server struct {
	cfg      Config
	env      svc.Env
	log      *slog.Logger
	mux      *http.ServeMux
	tokens   *auth.Store
	subs     *sub.Tokens
	limit    *auth.Limiter
	public   *auth.Limiter
	streams  *auth.Slots
	refusals *refusals
	// unauthLog rate-limits the log lines of 401s per remote address.
	unauthLog *refusals
	idem      *idempotency
	binaries  *install.Dir
	metrics   *metrics
	routes    []Route
	doc       []byte

	kvMu    sync.Mutex
	nodesKV jetstream.KeyValue

	stopOnce sync.Once
	stop     chan struct{}
}

// Route is one entry of the route table.
type Route struct {
	openapi.Operation
	// Need is the least role allowed; "" is public.
	Need auth.Role
	// PublicLimited rate-limits a public route per client address.
	PublicLimited bool
	h             func(http.ResponseWriter, *http.Request) error
	params        []string
}

// Pattern is the route's http.ServeMux pattern.
func (rt Route) Pattern() string { return rt.Method + " " + rt.Path }

// Mutating reports whether the route changes state (and is audited).
func (rt Route) Mutating() bool {
	return rt.Method != http.MethodGet && rt.Method != http.MethodHead
}

var pathParams = regexp.MustCompile(`\{([A-Za-z0-9_]+)(\.\.\.)?\}`)

// New builds the API over env.
func New(env svc.Env, cfg Config) *Server {
	s := &Server{
		cfg:      cfg,
		env:      env,
		log:      env.Log.With(logkey.Component, "gateway"),
		mux:      http.NewServeMux(),
		tokens:   auth.NewStore(env.JS, cfg.TokenCacheTTL),
		subs:     sub.NewTokens(env.JS),
		limit:    auth.NewLimiter(cfg.RatePerSecond, cfg.RateBurst),
		public:   auth.NewLimiter(cfg.PublicRatePerSecond, cfg.PublicRateBurst),
		streams:  auth.NewSlots(cfg.MaxStreamsPerToken),
		metrics:  newMetrics(env.Metrics),
		binaries: install.NewDir(cfg.AgentBinaries),
		stop:     make(chan struct{}),
	}
	s.refusals = newRefusals(cfg.AuditWindow, s.publishAudit)
	s.unauthLog = s.newUnauthenticatedLog()
	s.idem = newIdempotency(subject.UserIdempotencyTTL)
	addReadiness(env.Probe, env.NC)
	s.routes = s.table()
	ops := make([]openapi.Operation, len(s.routes))
	for i, rt := range s.routes {
		for _, m := range pathParams.FindAllStringSubmatch(rt.Path, -1) {
			s.routes[i].params = append(s.routes[i].params, m[1])
		}
		rt.Operation.Role = string(rt.Need)
		ops[i] = rt.Operation
		s.mux.Handle(rt.Pattern(), s.wrap(s.routes[i]))
	}
	s.doc = openapi.Build("vpnfleet API", cfg.Version, ops, problem.Codes).JSON()
	return s
}

// Routes returns the route table, in registration order.
func (s *Server) Routes() []Route { return s.routes }

// Mux is the router, so tests can ask it which pattern serves a request.
func (s *Server) Mux() *http.ServeMux { return s.mux }

// Tokens is the API token store.
func (s *Server) Tokens() *auth.Store { return s.tokens }

// Close ends long-lived responses (event streams, followed logs), so a
// graceful HTTP shutdown does not wait for them, and records the summaries
// of refusals whose audit window is still open (and the log lines of
// suppressed unauthenticated calls).
func (s *Server) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.refusals.close()
		s.unauthLog.close()
	})
}

// reqInfo is what the wrapper and handlers learn about one request.
type reqInfo struct {
	id     string
	tok    auth.Token
	target string
	code   string
	rec    *recorder
}

type infoKey struct{}

func infoOf(r *http.Request) *reqInfo {
	if i, ok := r.Context().Value(infoKey{}).(*reqInfo); ok {
		return i
	}
	return &reqInfo{rec: &recorder{}}
}

// setTarget names what a call acts on, for the audit record.
func setTarget(r *http.Request, kind, name string) { infoOf(r).target = kind + "/" + name }

// role is the role of the caller (empty on public routes).
func role(r *http.Request) auth.Role { return infoOf(r).tok.Role }

// ServeHTTP is the root: request id, metrics, problems for unknown routes
// and panics, then the router.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r)
	w.Header().Set("X-Request-Id", id)
	rec := &recorder{ResponseWriter: w}
	info := &reqInfo{id: id, rec: rec}
	ctx, span := startSpan(r)
	r = r.WithContext(context.WithValue(ctx, infoKey{}, info))
	rec.r = r
	defer func() {
		defer func() { endSpan(span, r, rec.status) }()
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("handling request", logkey.Method, r.Method, logkey.Path, redactPath(r.URL.Path), logkey.Err, fmt.Errorf("panic: %v", v))
			if !rec.wrote {
				problem.Write(rec, r, id, errs.New(errs.Internal, "panic"))
			}
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.metrics.observe(route, rec.status, time.Since(start))
	}()
	s.mux.ServeHTTP(rec, r)
	if rec.swallowed {
		p := problem.New(errs.NotFound, problem.CodeRouteNotFound, fmt.Sprintf("no route %s %s", r.Method, r.URL.Path),
			"see /api/v1/openapi.json for the routes")
		if rec.status == http.StatusMethodNotAllowed {
			p = problem.WithStatus(http.StatusMethodNotAllowed, errs.Invalid, problem.CodeMethodNotAllowed,
				fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path), "use one of the methods in the Allow header")
		}
		problem.Write(rec.ResponseWriter, r, id, p)
	}
}

var requestIDShape = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); requestIDShape.MatchString(id) {
		return id
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// recorder remembers the status and replaces the router's plain-text 404
// and 405 (routes that do not exist) with problems.
type recorder struct {
	http.ResponseWriter
	r         *http.Request
	status    int
	wrote     bool
	swallowed bool
}

func (w *recorder) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote, w.status = true, code
	if w.r.Pattern == "" && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.swallowed = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallowed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets streaming handlers push bytes through.
func (w *recorder) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.swallowed {
		f.Flush()
	}
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap is the one wrapper every route goes through.
func (s *Server) wrap(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoOf(r)
		err := s.admit(r, rt, info)
		if err == nil {
			err = checkPath(r, rt.params)
		}
		if err == nil {
			err = checkQuery(r.URL.Query(), rt.Query)
		}
		if err == nil {
			err = rt.h(w, r)
		}
		if err != nil {
			if info.rec.wrote {
				s.log.Warn("streaming response", logkey.Path, redactPath(r.URL.Path), logkey.Err, err)
			} else {
				p := problem.Write(w, r, info.id, err)
				info.code = p.Code
				if p.Class == errs.Internal {
					s.log.Error("handling request", logkey.Method, r.Method, logkey.Path, redactPath(r.URL.Path), logkey.Err, err)
				}
			}
		}
		switch {
		case info.rec.status == http.StatusUnauthorized:
			s.unauthenticated(r, rt, info)
		case rt.Mutating() && info.tok.ID != "":
			s.audit(r, rt, info)
		}
	})
}

// admit authenticates, rate-limits and authorises a request.
func (s *Server) admit(r *http.Request, rt Route, info *reqInfo) error {
	if rt.Need == "" {
		if rt.PublicLimited {
			if ok, wait := s.public.Allow("ip:" + clientIP(r)); !ok {
				return rateLimited(wait)
			}
		}
		return nil
	}
	tok, err := s.tokens.Authenticate(r.Context(), bearer(r))
	if err != nil {
		return authProblem(err)
	}
	info.tok = tok
	if ok, wait := s.limit.Allow(tok.ID); !ok {
		return rateLimited(wait)
	}
	if !tok.Role.Allows(rt.Need) {
		return problem.New(errs.Forbidden, errs.Forbidden.String(),
			fmt.Sprintf("a %s token may not %s (needs %s)", tok.Role, rt.ID, rt.Need),
			"use a token with the "+string(rt.Need)+" role; an admin creates one with `vpn tokens create --role "+string(rt.Need)+"`")
	}
	return nil
}

func authProblem(err error) error {
	login := "run `vpn login --url <gateway> --token <token>` (or set VPN_TOKEN); on first start vpnd writes an admin token to <data dir>/admin.token"
	switch {
	case errors.Is(err, auth.ErrMissing):
		return problem.New(errs.Unauthorized, problem.CodeTokenMissing, "this route needs an API token", login)
	case errors.Is(err, auth.ErrInvalid):
		return problem.New(errs.Unauthorized, problem.CodeTokenInvalid, "the API token is not recognised", login)
	case errors.Is(err, auth.ErrRevoked):
		return problem.New(errs.Unauthorized, problem.CodeTokenRevoked, "the API token was revoked", "ask an admin for a new token (`vpn tokens create`), then run `vpn login`")
	case errors.Is(err, auth.ErrExpired):
		return problem.New(errs.Unauthorized, problem.CodeTokenExpired, "the API token has expired", "ask an admin for a new token (`vpn tokens create`), then run `vpn login`")
	}
	return err
}

func rateLimited(wait time.Duration) error {
	p := problem.WithStatus(http.StatusTooManyRequests, errs.Unavailable, problem.CodeRateLimited,
		"too many requests with this token", "slow down and retry after the Retry-After header's seconds")
	p.RetryAfter = int(wait/time.Second) + 1
	return p
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// call sends one request to a service over NATS, bounded by the upstream
// timeout. A service that does not answer becomes a 503 problem naming it.
func call[Resp any](s *Server, r *http.Request, subj string, req any) (Resp, error) {
	return callWithin[Resp](s, r, subj, req, s.cfg.UpstreamTimeout)
}

// callWithin is call with its own time limit.
func callWithin[Resp any](s *Server, r *http.Request, subj string, req any, timeout time.Duration) (Resp, error) {
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	resp, err := bus.Request[Resp](ctx, s.env.NC, subj, req)
	if err != nil {
		return resp, upstream(err, subj, timeout)
	}
	return resp, nil
}

// upstream turns a transport failure (no responders, timeout) into a
// problem that says which service is not answering; remote errors pass.
func upstream(err error, subj string, timeout time.Duration) error {
	var e *errs.Error
	if !errors.As(err, &e) || e.Class != errs.Unavailable || e.Err == nil {
		return err
	}
	name, hint := serviceOf(subj)
	p := problem.New(errs.Unavailable, errs.Unavailable.String(),
		fmt.Sprintf("the %s is not answering (no answer on %s within %s)", name, subj, timeout), hint)
	p.Service = name
	return p
}

func serviceOf(subj string) (name, hint string) {
	switch {
	case strings.HasPrefix(subj, subject.UsersService+"."):
		return "users service", "start vpnd (`make run`) or vpn-users, and check that it is connected to NATS; then retry"
	case strings.HasPrefix(subj, subject.ServersService+"."):
		return "servers service", "start vpnd (`make run`), which runs the servers service, and check that it is connected to NATS; then retry"
	case strings.HasPrefix(subj, subject.JobsService+"."):
		return "jobs service", "start vpnd (`make run`) or vpn-users; then retry"
	case strings.HasPrefix(subj, subject.FleetService+"."):
		return "fleet service", "start vpnd (`make run`), whose users service enrolls nodes, and check that it is connected to NATS; then retry"
	case strings.HasPrefix(subj, subject.HealthService+"."):
		return "health service", "start vpnd (`make run`) or vpn-health, and check that it is connected to NATS; then retry"
	case strings.HasPrefix(subj, "vpn.agent."):
		n := strings.TrimPrefix(subj, "vpn.agent.")
		if i := strings.IndexByte(n, '.'); i >= 0 {
			n = n[:i]
		}
		return "agent of node " + n, "check that vpn-agent runs on node " + n + " (`vpn nodes list` shows its last heartbeat); then retry"
	}
	return "service behind " + subj, problem.Hint(errs.Unavailable)
}

// metrics counts requests and their latency by route and status.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpn_gateway_requests_total", Help: "HTTP requests by route pattern and status.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vpn_gateway_request_duration_seconds", Help: "HTTP request latency by route pattern and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "status"}),
	}
	if reg == nil {
		return m
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

// register registers c, or returns the collector already registered under
// its name (a second gateway on one registry shares the metrics).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) observe(route string, status int, d time.Duration) {
	if status == 0 {
		status = http.StatusOK
	}
	st := fmt.Sprint(status)
	m.requests.WithLabelValues(route, st).Inc()
	m.duration.WithLabelValues(route, st).Observe(d.Seconds())
}
