// Package daemon is vpnd: one process that runs the embedded NATS
// JetStream server (or joins an external one with --nats-url), provisions
// every stream and bucket, and runs every service core on one connection,
// with the gateway's HTTP API in front.
//
// The embedded server always authenticates: its trust (operator, accounts)
// lives in <data-dir>/nats, the in-process services connect with a service
// credential, and <data-dir>/nats/service.creds is written for standalone
// services. A listener reachable from other hosts uses TLS from a private
// CA in <data-dir>/nats/tls.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/health"
	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// Run is vpnd in the calling process: it returns nil after a clean shutdown when ctx ends,
// and an Invalid error (exit 2) for bad flags, config or data dir.
// `vpnd healthcheck [flags]` instead asks a running vpnd's ops listener
// whether it is ready (the images' HEALTHCHECK).
func Run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return run(ctx, args, getenv, stdout, false)
}

// Main is vpnd's main (cmd/vpnd): Run in a process of its own, whose local
// agent drops, once its runtime is open, every capability it does not use
// there (agent.Config.LimitCapabilities); vpnd itself needs none once its
// listeners are bound, which they are by then. Tests call Run instead:
// they run many vpnds in their own process.
func Main(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return run(ctx, args, getenv, stdout, true)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, ownProcess bool) error {
	cfg := Defaults()
	if ok, err := svc.Healthcheck(ctx, "vpnd", &cfg, func() string { return cfg.OpsAddr }, args, getenv, stdout); ok {
		return err
	}
	if err := config.Load("vpnd", &cfg, args, getenv, stdout); err != nil {
		return err
	}
	cfg.AgentNode.LimitCapabilities = ownProcess
	dataDir, err := prepareDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	cfg.DataDir = dataDir

	log, err := telemetry.NewLogger(stdout, cfg.LogLevel, "vpnd")
	if err != nil {
		return err
	}
	log.Info("starting", logkey.Version, version.Version, logkey.Config, config.Redacted(&cfg))
	stack := lifecycle.NewStack(log)
	defer stack.Close(ctx, 20*time.Second)

	_, stopTracing, err := telemetry.Tracing(ctx, cfg.OTLPEndpoint, "vpnd", version.Version)
	if err != nil {
		return err
	}
	stack.Push("tracing", stopTracing)

	// The first connection (--nats-url) and provisioning are retried
	// with backoff until NATS is ready, within --start-timeout.
	sctx, cancelStart := svc.StartContext(ctx, cfg.StartTimeout)
	defer cancelStart()
	conn, err := connect(sctx, cfg, log, stack)
	if err != nil {
		return err
	}
	nc := conn.nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("opening jetstream: %w", err)
	}
	if err := bus.ProvisionPatiently(sctx, js, cfg.Replicas, log); err != nil {
		return err
	}
	cancelStart()

	env := svc.NewEnv(nc, js, log)
	env.DataDir = dataDir

	usersCfg := cfg.Users
	authority, err := fleetAuthority(cfg, conn, stack)
	if err != nil {
		return err
	}
	usersCfg.Fleet = authority
	var agentEnv svc.Env
	if cfg.Agent {
		if agentEnv, err = localAgentEnv(ctx, cfg, env, conn, authority, stack); err != nil {
			return err
		}
	}

	// The gateway is started as vpn-gateway starts it: its first admin
	// token in <data-dir>/admin.token unless --admin-token-file says
	// otherwise, on vpnd's --http-addr.
	gwCfg := cfg.Gateway
	gwCfg.Addr = cfg.HTTPAddr
	if gwCfg.AdminTokenFile == "" {
		gwCfg.AdminTokenFile = filepath.Join(dataDir, gateway.AdminTokenFile)
	}
	gwCfg.BackupTrustDir = trustDir(cfg)
	schedule, err := backupSchedule(cfg, env)
	if err != nil {
		return err
	}
	gw, err := gateway.Start(ctx, gwCfg, env)
	if err != nil {
		return err
	}
	// Metrics are served on the ops listener only: the API listener is
	// public (subscription URLs) and /metrics there would need no token.
	var ops net.Listener
	if cfg.OpsAddr != "" {
		if ops, err = svc.Listen(cfg.OpsAddr); err != nil {
			_ = gw.Close()
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gw.Serve(gctx) })
	opsURL := ""
	if ops != nil {
		opsURL = "http://" + ops.Addr().String()
		g.Go(func() error { return svc.ServeHTTP(gctx, ops, svc.OpsHandler(env, cfg.Pprof), log) })
	}
	g.Go(func() error { return users.Run(gctx, usersCfg, env) })
	g.Go(func() error { return health.Run(gctx, cfg.Health, env) })
	if schedule != nil {
		g.Go(func() error { return schedule.Run(gctx, nc) })
	}
	if cfg.Agent {
		g.Go(func() error { return agent.Run(gctx, cfg.AgentNode, agentEnv) })
	}
	log.Info("vpnd ready",
		logkey.GatewayURL, gw.URL(),
		logkey.OpsURL, opsURL,
		logkey.NATSURL, conn.url,
		logkey.NATSCreds, conn.creds,
		logkey.NATSCA, conn.ca,
		logkey.DataDir, dataDir,
	)
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("stopped")
	return nil
}

// Files of the embedded server's authentication under the data dir.
const (
	// natsDir holds the trust (operator, accounts, account store) and,
	// when the listener uses TLS, the CA and certificate (natsDir/tls).
	natsDir = "nats"
	// serviceCredsFile is the service credential for standalone services
	// (vpn-users, vpn-gateway, vpn-health --nats-creds).
	serviceCredsFile = "service.creds"
)

// natsConn is how vpnd reaches NATS: its connection, and what the ready
// line tells operators.
type natsConn struct {
	nc    *nats.Conn
	url   string
	creds string // the service creds file, "" with --nats-url
	ca    string // the CA file of the listener's TLS, "" without

	// With the embedded server: the server, its trust and TLS, which sign
	// and reach node credentials. Nil with --nats-url.
	srv   *natsserver.Server
	trust *natsauth.Trust
	tls   *natsauth.TLS
}

// connect starts the embedded server (or dials --nats-url, retrying until
// ctx ends) and registers their shutdown: the connection drains before the
// server stops.
func connect(ctx context.Context, cfg Config, log *slog.Logger, stack *lifecycle.Stack) (natsConn, error) {
	if cfg.NATSURL != "" {
		nc, err := bus.Dial(ctx, bus.DialConfig{URL: cfg.NATSURL, Creds: cfg.NATSCreds, CA: cfg.NATSCA, Name: "vpnd"}, log)
		if err != nil {
			return natsConn{}, err
		}
		stack.Push("nats connection", func(context.Context) error { return nc.Drain() })
		return natsConn{nc: nc, url: cfg.NATSURL}, nil
	}
	dir := filepath.Join(cfg.DataDir, natsDir)
	trust, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		return natsConn{}, err
	}
	out := natsConn{creds: filepath.Join(dir, serviceCredsFile)}
	if err := trust.EnsureServiceCredsFile(out.creds, "standalone"); err != nil {
		return natsConn{}, err
	}
	var tlsFiles *natsserver.TLSFiles
	if cfg.natsTLS() {
		host, _, _ := net.SplitHostPort(cfg.NATSListen)
		tl, err := natsauth.LoadOrCreateTLS(filepath.Join(dir, "tls"), append([]string{host}, cfg.NATSAdvertise...))
		if err != nil {
			return natsConn{}, err
		}
		tlsFiles = &natsserver.TLSFiles{Cert: tl.CertFile(), Key: tl.KeyFile(), CA: tl.CAFile()}
		out.ca, out.tls = tl.CAFile(), tl
		log.Info("nats tls", logkey.CASHA256, tl.CAFingerprint(), logkey.Path, tl.CAFile())
	}
	srv, err := natsserver.Start(natsserver.Config{
		DataDir:      cfg.DataDir,
		Listen:       cfg.NATSListen,
		SyncInterval: cfg.SyncInterval,
		MaxPayload:   natsserver.EmbeddedMaxPayload,
		Trust:        trust,
		TLS:          tlsFiles,
	}, log.With(logkey.Component, "nats"))
	if err != nil {
		return natsConn{}, err
	}
	stack.PushFunc("embedded nats", srv.Shutdown)
	nc, err := srv.Connect(nats.Name("vpnd"))
	if err != nil {
		return natsConn{}, err
	}
	stack.Push("nats connection", func(ctx context.Context) error { return drain(ctx, nc) })
	out.nc, out.url, out.srv, out.trust = nc, srv.ClientURL(), srv, trust
	return out, nil
}

// drain drains nc and waits until it is closed, so every pending publish
// and ack reaches the server before it stops.
func drain(ctx context.Context, nc *nats.Conn) error {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		return err
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return ctx.Err()
	}
}

// fleetAuthority is what signs node credentials: the embedded server's
// trust, a system-account connection for revocations, and where other
// hosts reach NATS (tls:// with the CA's fingerprint, or nats:// on a
// loopback listener). With --nats-url, vpnd holds no keys (nil).
func fleetAuthority(cfg Config, conn natsConn, stack *lifecycle.Stack) (*users.FleetAuthority, error) {
	if conn.srv == nil || conn.trust == nil {
		return nil, nil
	}
	sysCred, err := conn.trust.SystemCredential("vpnd")
	if err != nil {
		return nil, err
	}
	sys, err := conn.srv.ConnectAs(sysCred, nats.Name("vpnd-system"))
	if err != nil {
		return nil, err
	}
	stack.PushFunc("nats system connection", sys.Close)
	a := &users.FleetAuthority{Trust: conn.trust, System: sys}
	if cfg.NATSListen != "" {
		_, port, _ := net.SplitHostPort(cfg.NATSListen)
		host, _, _ := net.SplitHostPort(cfg.NATSListen)
		hosts := cfg.NATSAdvertise
		if len(hosts) == 0 {
			hosts = []string{host}
		}
		scheme := "nats://"
		if conn.tls != nil {
			scheme = "tls://"
			a.CAFingerprint, a.CAPEM = conn.tls.CAFingerprint(), conn.tls.CAPEM()
		}
		for _, h := range hosts {
			a.URLs = append(a.URLs, scheme+net.JoinHostPort(h, port))
		}
	}
	return a, nil
}

// localAgentEnv is the environment of vpnd's own agent: like any agent it
// connects with its node's credential (in-process), so it reads its own
// view and writes its own status, nothing else. The node's key is kept in
// <data dir>/agent/nats/node.nk (0600); the node is enrolled with
// --agent-groups.
func localAgentEnv(ctx context.Context, cfg Config, env svc.Env, conn natsConn, authority *users.FleetAuthority, stack *lifecycle.Stack) (svc.Env, error) {
	agentEnv := env
	agentEnv.DataDir = filepath.Join(cfg.DataDir, "agent")
	agentEnv.Log = env.Log.With(logkey.Component, "agent")
	if authority == nil {
		// An external NATS: vpnd holds no signing keys; the agent uses
		// vpnd's connection (its --nats-creds).
		return agentEnv, nil
	}
	id, err := agent.NodeID(cfg.AgentNode.NodeID, agentEnv.DataDir)
	if err != nil {
		return svc.Env{}, err
	}
	cfg.AgentNode.NodeID = id
	kp, err := natsauth.LoadOrCreateUserKey(filepath.Join(agentEnv.DataDir, "nats", "node.nk"))
	if err != nil {
		return svc.Env{}, err
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	token, err := users.EnrollLocal(ctx, env.JS, authority, id, cfg.AgentGroups, pub)
	if err != nil {
		return svc.Env{}, err
	}
	nc, err := conn.srv.ConnectAs(natsauth.Credential{JWT: token, Seed: seed},
		nats.Name("vpnd-agent"), nats.CustomInboxPrefix(subject.NodeInboxPrefix(id)))
	if err != nil {
		return svc.Env{}, err
	}
	stack.Push("agent nats connection", func(ctx context.Context) error { return drain(ctx, nc) })
	js, err := jetstream.New(nc)
	if err != nil {
		return svc.Env{}, fmt.Errorf("opening jetstream: %w", err)
	}
	agentEnv.NC, agentEnv.JS = nc, js
	return agentEnv, nil
}
