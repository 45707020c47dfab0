package svc

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
)

// Config is the part of configuration every service binary shares. Binaries
// embed it in their own Config struct.
type Config struct {
	NATSURL      string `flag:"nats-url" env:"VPN_NATS_URL" help:"NATS server URL(s), comma-separated"`
	NATSCreds    string `flag:"nats-creds" env:"VPN_NATS_CREDS" help:"NATS credentials file (vpnd writes one for services: <data dir>/nats/service.creds)"`
	NATSCA       string `flag:"nats-ca" env:"VPN_NATS_CA" help:"CA certificate (PEM) of the NATS servers' TLS, trusted instead of public CAs (vpnd's: <data dir>/nats/tls/ca.pem)"`
	OpsAddr      string `flag:"ops-addr" env:"VPN_OPS_ADDR" help:"address serving /healthz, /readyz and /metrics (empty: none)"`
	Pprof        bool   `flag:"pprof" env:"VPN_PPROF" help:"also serve Go's profiles (/debug/pprof/) on the ops listener"`
	LogLevel     string `flag:"log-level" env:"VPN_LOG_LEVEL" help:"debug, info, warn or error"`
	OTLPEndpoint string `flag:"otlp-endpoint" env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"OTLP/HTTP trace endpoint (empty: tracing off)"`
	Replicas     int    `flag:"replicas" env:"VPN_REPLICAS" help:"replicas of provisioned streams and buckets (1, or 3 on a cluster)"`
	Provision    bool   `flag:"provision" env:"VPN_PROVISION" help:"create or update streams and buckets at start"`
	// StartTimeout bounds the wait for NATS at start: the first
	// connection and provisioning are retried with backoff until then.
	StartTimeout time.Duration `flag:"start-timeout" env:"VPN_START_TIMEOUT" help:"how long start-up waits for NATS (first connection, provisioning), retrying with backoff, before it gives up"`
	// DialOptions are extra options of the NATS connection, set by a
	// binary's own code (an agent's credential and inbox prefix); not a
	// flag.
	DialOptions []nats.Option
}

// Defaults returns the shared defaults for a service whose ops endpoint
// listens on opsAddr.
func Defaults(opsAddr string) Config {
	return Config{
		NATSURL:      "nats://127.0.0.1:4222",
		OpsAddr:      opsAddr,
		LogLevel:     "info",
		Replicas:     1,
		Provision:    true,
		StartTimeout: DefaultStartTimeout,
	}
}

// Validate checks the shared fields.
func (c Config) Validate() error {
	var fe []errs.FieldError
	if c.NATSURL == "" {
		fe = append(fe, errs.FieldError{Field: "nats_url", Rule: "must be set"})
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		fe = append(fe, errs.FieldError{Field: "replicas", Rule: "must be 1, 3 or 5"})
	}
	if c.StartTimeout <= 0 {
		fe = append(fe, errs.FieldError{Field: "start_timeout", Rule: "must be positive"})
	}
	if c.Pprof && c.OpsAddr == "" {
		fe = append(fe, errs.FieldError{Field: "pprof", Rule: "needs the ops listener (--ops-addr)"})
	}
	return errs.Fields(fe...)
}

// DefaultStartTimeout is how long start-up waits for NATS by default:
// long enough for a cluster started at the same time to elect its leaders
// and place R3 streams, short enough that a wrong URL is noticed.
const DefaultStartTimeout = 2 * time.Minute

// Connect is how a process starts on a NATS it does not embed: the first
// connection, then (replicas > 0) provisioning with that replica count,
// each retried with backoff and logged attempt by attempt
// (bus.Patiently), all within timeout. Services started before their
// cluster, or several replicas started at once, all come up once NATS
// does. When timeout passes first, the error is Unavailable with code
// errs.CodeNotReady and names the setting, and nothing stays open.
func Connect(ctx context.Context, dial bus.DialConfig, replicas int, timeout time.Duration, log *slog.Logger, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	sctx, cancel := StartContext(ctx, timeout)
	defer cancel()
	nc, err := bus.Dial(sctx, dial, log, extra...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("opening jetstream: %w", err)
	}
	if replicas > 0 {
		if err := bus.ProvisionPatiently(sctx, js, replicas, log); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	return nc, js, nil
}

// StartContext is ctx bounded by the start timeout, whose cause names the
// setting, so the error of a start that gave up says which one to raise.
func StartContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, timeout, fmt.Errorf("nats was not ready within the start timeout of %s (--start-timeout)", timeout))
}

// Standalone runs core as its own process: logger, tracing, NATS dial,
// provisioning, the ops HTTP endpoint, then core until ctx ends, then an
// ordered shutdown. It logs "started", "shutting down" when ctx ends (the
// binary got SIGTERM or SIGINT) and "stopped" once everything is closed.
// name is the binary's name; version is reported in traces and logs.
func Standalone(ctx context.Context, name, version string, cfg Config, stdout io.Writer, core Core) error {
	log, err := telemetry.NewLogger(stdout, cfg.LogLevel, name)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		if started {
			log.Info("stopped")
		}
	}()
	stack := lifecycle.NewStack(log)
	defer stack.Close(ctx, 15*time.Second)

	_, stopTracing, err := telemetry.Tracing(ctx, cfg.OTLPEndpoint, name, version)
	if err != nil {
		return err
	}
	stack.Push("tracing", stopTracing)

	dial := bus.DialConfig{URL: cfg.NATSURL, Creds: cfg.NATSCreds, CA: cfg.NATSCA, Name: name}
	replicas := cfg.Replicas
	if !cfg.Provision {
		replicas = 0
	}
	nc, js, err := Connect(ctx, dial, replicas, cfg.StartTimeout, log, cfg.DialOptions...)
	if err != nil {
		return err
	}
	stack.Push("nats", func(context.Context) error { return nc.Drain() })

	env := NewEnv(nc, js, log)
	if !cfg.Provision {
		// A process that provisions nothing (vpn-agent) holds a credential
		// that may not look streams up (a node's): asking would fail its
		// /readyz for good. It is ready while connected, plus whatever its
		// core adds.
		env.Probe.Add("jetstream", func(context.Context) error { return nil })
	}

	// The connection reconnects forever; it closes for good only when the
	// server refuses its credential (revoked, expired): then the binary
	// stops, saying why, instead of running cut off.
	g, gctx := errgroup.WithContext(ctx)
	closed := make(chan error, 1)
	nc.SetClosedHandler(func(c *nats.Conn) {
		if err := c.LastError(); bus.Refused(err) {
			closed <- errs.Wrap(errs.Unauthorized, err, "nats closed the connection: its credential was revoked or expired")
		}
	})
	g.Go(func() error {
		select {
		case err := <-closed:
			return err
		case <-gctx.Done():
			return nil
		}
	})
	if cfg.OpsAddr != "" {
		l, err := Listen(cfg.OpsAddr)
		if err != nil {
			return err
		}
		log.Info("ops endpoint listening", logkey.Addr, l.Addr().String())
		g.Go(func() error { return ServeHTTP(gctx, l, OpsHandler(env, cfg.Pprof), log) })
	}
	g.Go(func() error { return core(gctx, env) })
	log.Info("started", logkey.Version, version)
	started = true
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			log.Info("shutting down", logkey.Detail, context.Cause(ctx).Error())
		}
		return nil
	})
	return g.Wait()
}
