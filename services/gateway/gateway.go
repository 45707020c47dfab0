// Package gateway is the HTTP door of the product: the REST API under
// /api/v1, subscription URLs, and the ops endpoints (/healthz, /readyz,
// /metrics). It holds no state of its own; it talks to the services over
// NATS. vpnd mounts Handler on its listener; vpn-gateway runs Run.
package gateway

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

// Config is the gateway's own configuration.
type Config struct {
	Addr string `flag:"http-addr" env:"VPN_HTTP_ADDR" help:"address the HTTP API listens on"`
}

// Gateway serves the HTTP API over a service Env.
type Gateway struct {
	env svc.Env
	mux *http.ServeMux
}

// New builds the gateway's routes.
func New(env svc.Env) *Gateway {
	g := &Gateway{env: env, mux: http.NewServeMux()}
	env.Probe.Register(g.mux)
	g.mux.Handle("GET /metrics", telemetry.MetricsHandler(env.Metrics))
	return g
}

// Handler is the gateway's root handler.
func (g *Gateway) Handler() http.Handler { return g.mux }

// Run listens on cfg.Addr and serves until ctx ends.
func Run(ctx context.Context, cfg Config, env svc.Env) error {
	l, err := svc.Listen(cfg.Addr)
	if err != nil {
		return err
	}
	env.Log.Info("gateway listening", logkey.URL, "http://"+l.Addr().String())
	return svc.ServeHTTP(ctx, l, New(env).Handler(), env.Log.With(slog.String(logkey.Component, "gateway")))
}
