// Package gateway is the HTTP door of the product: the REST API under
// /api/v1 (internal/api), API tokens and roles (internal/auth), problem
// details (internal/problem), event streams (internal/sse), public
// subscription URLs (internal/sub), the OpenAPI description
// (internal/openapi), and the probes (/healthz, /readyz; /metrics is served
// by the binary on its ops listener, never on this public one).
// It keeps no state of its own beyond two buckets (tokens, sub_tokens); it
// talks to the services over NATS. vpnd mounts Handler on its listener;
// vpn-gateway runs Run.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/auth"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// Config is the gateway's own configuration.
type Config struct {
	Addr            string        `flag:"http-addr" env:"VPN_HTTP_ADDR" help:"address the HTTP API listens on"`
	PublicURL       string        `flag:"public-url" env:"VPN_PUBLIC_URL" help:"base URL of subscription links handed to users (empty: a trusted proxy's X-Forwarded-Host, else each request's Host)"`
	UpstreamTimeout time.Duration `flag:"upstream-timeout" env:"VPN_GATEWAY_UPSTREAM_TIMEOUT" help:"time limit of each request to a service over NATS"`
	JobTimeout      time.Duration `flag:"job-timeout" env:"VPN_GATEWAY_JOB_TIMEOUT" help:"time limit of starting a bulk job (the registry validates the whole file first)"`
	MaxBodyBytes    int64         `flag:"max-body-bytes" env:"VPN_GATEWAY_MAX_BODY_BYTES" help:"largest request body accepted"`
	MaxImportBytes  int64         `flag:"max-import-bytes" env:"VPN_GATEWAY_MAX_IMPORT_BYTES" help:"largest import file accepted; it travels to the registry through the job_inputs object store (at most 1 GiB)"`
	RateLimit       float64       `flag:"rate-limit" env:"VPN_GATEWAY_RATE_LIMIT" help:"requests per second allowed per API token (0: no limit)"`
	RateBurst       int           `flag:"rate-burst" env:"VPN_GATEWAY_RATE_BURST" help:"burst of requests allowed per API token"`
	PublicRateLimit float64       `flag:"public-rate-limit" env:"VPN_GATEWAY_PUBLIC_RATE_LIMIT" help:"subscription requests per second allowed per client address (0: no limit)"`
	PublicRateBurst int           `flag:"public-rate-burst" env:"VPN_GATEWAY_PUBLIC_RATE_BURST" help:"burst of subscription requests per client address"`
	TokenCacheTTL   time.Duration `flag:"token-cache-ttl" env:"VPN_GATEWAY_TOKEN_CACHE_TTL" help:"how long a token is trusted before it is read again (revocations elsewhere take this long)"`
	EventsPing      time.Duration `flag:"events-ping" env:"VPN_GATEWAY_EVENTS_PING" help:"keep-alive interval of event streams"`
	MaxStreams      int           `flag:"max-streams-per-token" env:"VPN_GATEWAY_MAX_STREAMS_PER_TOKEN" help:"event streams one API token may hold open at once"`
	AuditWindow     time.Duration `flag:"audit-refusal-window" env:"VPN_GATEWAY_AUDIT_REFUSAL_WINDOW" help:"refused calls (4xx) of one token, action and status within this window are audited as the first one and one summary with their count"`
	// TrustedProxies are the peers (CIDRs or addresses) whose
	// X-Forwarded-Host and X-Forwarded-Proto headers name the public URL
	// when PublicURL is empty; anyone else's are ignored.
	TrustedProxies []string `flag:"trusted-proxies" env:"VPN_GATEWAY_TRUSTED_PROXIES" help:"reverse proxies (CIDRs or IPs, comma-separated) whose X-Forwarded-Host and X-Forwarded-Proto set subscription URLs when --public-url is empty"`
	AdminTokenFile string   `flag:"admin-token-file" env:"VPN_GATEWAY_ADMIN_TOKEN_FILE" help:"on first start (no token exists), create an admin token and write it to this file, 0600 (empty: do not)"`
	// AgentBinaries is where /install/ finds the binaries new hosts
	// download: <name>-linux-<arch>, or <name> built for that platform.
	AgentBinaries string `flag:"agent-binaries" env:"VPN_GATEWAY_AGENT_BINARIES" help:"directory of the vpn-agent and xray binaries /install/agent.sh installs on new hosts: vpn-agent-linux-arm64 and so on, or vpn-agent and xray built for one platform (empty: this executable's directory, bin/ after make build)"`
	// BackupTrustDir is the embedded NATS server's trust directory, which
	// backups made through the API carry; vpnd sets it, a standalone
	// gateway (whose NATS keeps its own trust) leaves it empty.
	BackupTrustDir string
}

// Defaults returns the gateway's defaults.
func Defaults() Config {
	return Config{
		Addr:            "127.0.0.1:8080",
		UpstreamTimeout: 5 * time.Second,
		JobTimeout:      2 * time.Minute,
		MaxBodyBytes:    1 << 20,
		MaxImportBytes:  job.DefaultMaxInput,
		RateLimit:       50,
		RateBurst:       100,
		PublicRateLimit: 5,
		PublicRateBurst: 20,
		TokenCacheTTL:   5 * time.Second,
		EventsPing:      15 * time.Second,
		MaxStreams:      8,
		AuditWindow:     time.Minute,
		TrustedProxies:  []string{"127.0.0.0/8", "::1/128"},
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var fe []errs.FieldError
	if c.UpstreamTimeout <= 0 {
		fe = append(fe, errs.FieldError{Field: "upstream_timeout", Rule: "must be positive"})
	}
	if c.MaxBodyBytes < 1024 {
		fe = append(fe, errs.FieldError{Field: "max_body_bytes", Rule: "must be at least 1024"})
	}
	if c.MaxImportBytes < 1 || c.MaxImportBytes > subject.JobInputsMaxBytes {
		fe = append(fe, errs.FieldError{Field: "max_import_bytes", Rule: fmt.Sprintf("must be 1-%d (the job_inputs object store's size)", subject.JobInputsMaxBytes)})
	}
	if c.RateLimit < 0 || c.PublicRateLimit < 0 {
		fe = append(fe, errs.FieldError{Field: "rate_limit", Rule: "must not be negative"})
	}
	if c.AuditWindow <= 0 {
		fe = append(fe, errs.FieldError{Field: "audit_refusal_window", Rule: "must be positive"})
	}
	if c.MaxStreams < 1 {
		fe = append(fe, errs.FieldError{Field: "max_streams_per_token", Rule: "must be at least 1"})
	}
	if c.TokenCacheTTL < 0 {
		fe = append(fe, errs.FieldError{Field: "token_cache_ttl", Rule: "must not be negative"})
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			fe = append(fe, errs.FieldError{Field: "public_url", Rule: "must be an http(s) URL with a host, e.g. https://vpn.example.com"})
		}
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		fe = append(fe, errs.FieldError{Field: "trusted_proxies", Rule: err.Error()})
	}
	return errs.Fields(fe...)
}

// parsePrefixes reads CIDRs, taking a bare address as its own /32 or /128.
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR or an IP address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// AdminTokenFile is the name vpnd gives the first admin token's file in its
// data dir.
const AdminTokenFile = "admin.token"

// Gateway serves the HTTP API over a service Env.
type Gateway struct {
	api *api.Server
}

// New builds the gateway's routes. Zero fields of cfg take their defaults.
func New(env svc.Env, cfg Config) *Gateway {
	d := Defaults()
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = d.UpstreamTimeout
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = d.JobTimeout
	}
	if cfg.MaxImportBytes <= 0 {
		cfg.MaxImportBytes = d.MaxImportBytes
	}
	if cfg.EventsPing <= 0 {
		cfg.EventsPing = d.EventsPing
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = d.MaxStreams
	}
	if cfg.AuditWindow <= 0 {
		cfg.AuditWindow = d.AuditWindow
	}
	trusted, _ := parsePrefixes(cfg.TrustedProxies) // checked by Validate
	return &Gateway{api: api.New(env, api.Config{
		Version:             version.Version,
		PublicURL:           cfg.PublicURL,
		TrustedProxies:      trusted,
		UpstreamTimeout:     cfg.UpstreamTimeout,
		JobTimeout:          max(cfg.JobTimeout, cfg.UpstreamTimeout),
		MaxBodyBytes:        cfg.MaxBodyBytes,
		MaxImportBytes:      cfg.MaxImportBytes,
		RatePerSecond:       cfg.RateLimit,
		RateBurst:           cfg.RateBurst,
		PublicRatePerSecond: cfg.PublicRateLimit,
		PublicRateBurst:     cfg.PublicRateBurst,
		TokenCacheTTL:       cfg.TokenCacheTTL,
		EventsPing:          cfg.EventsPing,
		MaxStreamsPerToken:  cfg.MaxStreams,
		AuditWindow:         cfg.AuditWindow,
		BackupTrustDir:      cfg.BackupTrustDir,
		AgentBinaries:       cfg.AgentBinaries,
	})}
}

// Handler is the gateway's root handler.
func (g *Gateway) Handler() http.Handler { return g.api }

// API is the API server, for tests that walk its routes.
func (g *Gateway) API() *api.Server { return g.api }

// Close ends long-lived responses (event streams, followed logs) so that a
// graceful HTTP shutdown does not wait for them. Call it when the serving
// context ends.
func (g *Gateway) Close() { g.api.Close() }

// Server is a started gateway: its configuration checked, its first admin
// token made, its listener open. vpn-gateway and vpnd both start the
// gateway with Start, then Serve it.
type Server struct {
	gw  *Gateway
	l   net.Listener
	log *slog.Logger
}

// Start validates cfg, makes the first admin token (cfg.AdminTokenFile),
// and listens on cfg.Addr; it serves nothing until Serve.
func Start(ctx context.Context, cfg Config, env svc.Env) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.AdminTokenFile != "" {
		if _, err := Bootstrap(ctx, env, cfg.AdminTokenFile); err != nil {
			return nil, err
		}
	}
	l, err := svc.Listen(cfg.Addr)
	if err != nil {
		return nil, err
	}
	return &Server{gw: New(env, cfg), l: l, log: env.Log.With(slog.String(logkey.Component, "gateway"))}, nil
}

// URL is where the API listens (http://host:port).
func (s *Server) URL() string { return "http://" + s.l.Addr().String() }

// Gateway is the served gateway.
func (s *Server) Gateway() *Gateway { return s.gw }

// Close closes the listener of a Server that will not be served.
func (s *Server) Close() error { return s.l.Close() }

// Serve serves the API until ctx ends, ending long-lived responses first so
// that the graceful shutdown does not wait for them.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.gw.Close)
	defer stop()
	return svc.ServeHTTP(ctx, s.l, s.gw.Handler(), s.log)
}

// Run starts the gateway and serves it until ctx ends.
func Run(ctx context.Context, cfg Config, env svc.Env) error {
	s, err := Start(ctx, cfg, env)
	if err != nil {
		return err
	}
	env.Log.Info("gateway listening", logkey.URL, s.URL())
	return s.Serve(ctx)
}

// Bootstrap makes the first admin token when no token exists yet and
// writes it to path (mode 0600, the directory 0700), logging only the
// path. It reports whether it made one; on later starts it does nothing.
func Bootstrap(ctx context.Context, env svc.Env, path string) (bool, error) {
	store := auth.NewStore(env.JS, 0)
	empty, err := store.Empty(ctx)
	if err != nil || !empty {
		return false, err
	}
	_, secret, err := store.Create(ctx, "admin (first start)", auth.Admin, 0, "")
	if err != nil {
		return false, err
	}
	if err := writeSecret(path, secret+"\n"); err != nil {
		return false, err
	}
	env.Log.Info("admin token written; log in with `vpn login --token-file <path>`", logkey.Path, path)
	return true, nil
}

// writeSecret writes data to path atomically, readable by the owner only.
func writeSecret(path, data string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errs.Wrap(errs.Invalid, err, "creating %s", dir)
	}
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "writing admin token in %s", dir)
	}
	_, werr := f.WriteString(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), 0o600)); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing admin token %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing admin token %s: %w", path, err)
	}
	return nil
}
