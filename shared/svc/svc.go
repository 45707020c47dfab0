// Package svc is the process plumbing a service core runs on, the same
// whether the core runs in its own binary (vpn-users, vpn-health, ...) or
// inside vpnd: the NATS connection, logger, metrics registry and readiness
// probe (Env), an HTTP server with graceful shutdown (ServeHTTP), and the
// start-up sequence of a standalone service binary (Standalone).
package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

// Env is what a service core is given to run: everything process-wide, none
// of it owned by the core (the caller closes it after the core returns).
type Env struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Log     *slog.Logger
	Metrics *prometheus.Registry
	Probe   *probe.Probe
	// Requests exports the request metrics of the micro services a core
	// starts (it adds them); nil in tests that do not look.
	Requests *telemetry.Requests
	// DataDir is a directory the core may keep local files in (agents use
	// it for buffers); empty for stateless services.
	DataDir string
}

// Core is a service's main loop: it runs until ctx ends, then stops its
// intake, finishes in-flight work and returns nil; an error means it could
// not start or failed for good.
type Core func(ctx context.Context, env Env) error

// Listen opens a TCP listener, classifying a taken or malformed address as
// Invalid so the binary exits 2 with a clear line.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "listening on %s", addr)
	}
	return l, nil
}

// ServeHTTP serves h on l until ctx ends, then shuts down gracefully,
// giving in-flight requests up to 10s.
func ServeHTTP(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return errs.Wrap(errs.Internal, err, "serving http on %s", l.Addr())
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		log.Warn("serving http", logkey.Addr, l.Addr().String(), logkey.Err, serr)
	}
	return err
}

// NewEnv is the Env every process builds over its NATS connection: a fresh
// metrics registry with the request metrics, and a probe that is ready
// while the connection is up and JetStream answers. Standalone binaries and
// vpnd both start from it; the caller sets DataDir.
func NewEnv(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) Env {
	env := Env{NC: nc, JS: js, Log: log, Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	env.Requests = telemetry.NewRequests(env.Metrics)
	env.Probe.Add("nats", func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", nc.Status())
		}
		return nil
	})
	env.Probe.Add("jetstream", func(ctx context.Context) error { return bus.Ready(ctx, js) })
	return env
}

// OpsHandler serves env's /healthz, /readyz and /metrics, for the ops
// listener (never the public one), and with pprof Go's profiles under
// /debug/pprof/ (off by default: a profile shows a process's internals and
// costs CPU while it is taken).
func OpsHandler(env Env, pprof bool) http.Handler {
	mux := http.NewServeMux()
	env.Probe.Register(mux)
	mux.Handle("GET /metrics", telemetry.MetricsHandler(env.Metrics))
	if pprof {
		mux.HandleFunc("GET /debug/pprof/", httppprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", httppprof.Trace)
	}
	return mux
}
