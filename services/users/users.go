// Package users is the user registry service: it owns VPN users (the
// desired state every agent converges to), their credentials, quotas and
// usage counters, and the desired servers those users connect to. Run is
// its core, the same in vpn-users and inside vpnd: a NATS micro service on
// vpn.users.* (see package endpoints), another on vpn.servers.* (the
// servers registry), another on vpn.jobs.* (bulk jobs, see package
// jobs) with workers on the JOBS work queue, a consumer of USAGE that adds
// traffic to the counters, and an enforcement loop that expires, limits
// and resets users on time. Every replica runs all of them; compare-and-set
// writes make that safe.
package users

import (
	"github.com/nats-io/nats.go/jetstream"

	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/users/internal/endpoints"
	"github.com/vpnfleet/vpnfleet/services/users/internal/fleet"
	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/jobs"
	"github.com/vpnfleet/vpnfleet/services/users/internal/migrate"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/services/users/internal/views"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/usage"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Config is the registry's own configuration (the NATS connection and the
// rest come with svc.Env).
type Config struct {
	RequestTimeout  time.Duration `flag:"request-timeout" env:"VPN_USERS_REQUEST_TIMEOUT" help:"time limit of one request to the users service"`
	EnforceInterval time.Duration `flag:"enforce-interval" env:"VPN_USERS_ENFORCE_INTERVAL" help:"how often expiry, quotas and periodic resets are checked"`
	NameClaimGrace  time.Duration `flag:"name-claim-grace" env:"VPN_USERS_NAME_CLAIM_GRACE" help:"age after which a name claim left by a crashed create may be taken over; must exceed request-timeout"`
	JobWorkers      int           `flag:"job-workers" env:"VPN_USERS_JOB_WORKERS" help:"batches of bulk-job items this replica applies at once"`
	JobBatch        int           `flag:"job-batch" env:"VPN_USERS_JOB_BATCH" help:"items per JOBS message (one atomic write of each kind per batch)"`
	JobTimeout      time.Duration `flag:"job-timeout" env:"VPN_USERS_JOB_TIMEOUT" help:"time limit of a job create request (validation of the whole input) and of applying one batch"`
	UsageMaxRate    int64         `flag:"usage-max-rate" env:"VPN_USERS_USAGE_MAX_RATE" help:"bytes per second a node can move at most; a usage record claiming more over its window is refused"`
	// NATSTrust and JoinURLs let a standalone registry on a NATS cluster
	// enroll nodes: the signer directory `vpn-cluster init` writes (the
	// account signing key, the JWTs and the CA; never the operator key,
	// so revoking stays with the operator) and the URLs join tokens list.
	NATSTrust string   `flag:"nats-trust" env:"VPN_USERS_NATS_TRUST" help:"signer directory written by 'vpn-cluster init' (<dir>/signer): mint node credentials and join tokens with it; revoking needs the operator key and answers unavailable"`
	JoinURLs  []string `flag:"join-urls" env:"VPN_USERS_JOIN_URLS" help:"NATS URLs a join token lists (tls://host:port, comma-separated), with --nats-trust"`
	// Fleet signs node credentials (join, revoke); nil in a registry that
	// does not hold the keys, whose fleet endpoints then answer
	// Unavailable. Not a flag: vpnd passes its own; --nats-trust makes
	// one that cannot revoke.
	Fleet *fleet.Authority
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		RequestTimeout:  10 * time.Second,
		EnforceInterval: 30 * time.Second,
		NameClaimGrace:  time.Minute,
		JobWorkers:      4,
		JobBatch:        250,
		JobTimeout:      time.Minute,
		UsageMaxRate:    usage.DefaultMaxRate,
	}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	var fe []errs.FieldError
	if c.RequestTimeout <= 0 {
		fe = append(fe, errs.FieldError{Field: "request_timeout", Rule: "must be positive"})
	}
	if c.EnforceInterval <= 0 {
		fe = append(fe, errs.FieldError{Field: "enforce_interval", Rule: "must be positive"})
	}
	if c.JobWorkers < 1 || c.JobWorkers > 64 {
		fe = append(fe, errs.FieldError{Field: "job_workers", Rule: "must be 1-64"})
	}
	if c.JobBatch < 1 || c.JobBatch > registry.MaxBatch {
		fe = append(fe, errs.FieldError{Field: "job_batch", Rule: fmt.Sprintf("must be 1-%d", registry.MaxBatch)})
	}
	if c.UsageMaxRate <= 0 {
		fe = append(fe, errs.FieldError{Field: "usage_max_rate", Rule: "must be positive (bytes per second)"})
	}
	if c.JobTimeout <= 0 {
		fe = append(fe, errs.FieldError{Field: "job_timeout", Rule: "must be positive"})
	}
	if c.NameClaimGrace <= c.RequestTimeout {
		fe = append(fe, errs.FieldError{Field: "name_claim_grace", Rule: "must exceed request_timeout"})
	}
	if c.NATSTrust != "" && len(c.JoinURLs) == 0 {
		fe = append(fe, errs.FieldError{Field: "join_urls", Rule: "must be set with nats_trust (the URLs agents dial)"})
	}
	if c.NATSTrust == "" && len(c.JoinURLs) > 0 {
		fe = append(fe, errs.FieldError{Field: "join_urls", Rule: "needs nats_trust"})
	}
	for i, u := range c.JoinURLs {
		if !strings.HasPrefix(u, "tls://") {
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("join_urls[%d]", i), Rule: "must be tls://host:port (agents join over TLS)"})
		}
	}
	return errs.Fields(fe...)
}

// signerAuthority is the fleet authority of a registry given --nats-trust:
// it mints node and join credentials with the account signing key, pins
// the CA kept next to it (ca.pem), and cannot revoke.
func signerAuthority(cfg Config) (*fleet.Authority, error) {
	trust, err := natsauth.LoadSigner(cfg.NATSTrust)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(cfg.NATSTrust, "ca.pem")
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the CA agents pin (%s)", caFile)
	}
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errs.New(errs.Invalid, "%s holds no PEM certificate", caFile)
	}
	return &fleet.Authority{Trust: trust, URLs: cfg.JoinURLs, CAFingerprint: natsauth.Fingerprint(block.Bytes), CAPEM: caPEM}, nil
}

// Run runs the registry until ctx ends, then stops taking requests, drains
// the usage consumer and returns nil. It returns an error when it cannot
// start; ctx ending while it starts is a stop, not a failure.
func Run(ctx context.Context, cfg Config, env svc.Env) error {
	err := run(ctx, cfg, env)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func run(ctx context.Context, cfg Config, env svc.Env) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Fleet == nil && cfg.NATSTrust != "" {
		a, err := signerAuthority(cfg)
		if err != nil {
			return err
		}
		cfg.Fleet = a
	}
	log := env.Log.With(logkey.Component, "users")
	reg, err := registry.Open(ctx, env.JS, log, registry.Options{ClaimGrace: cfg.NameClaimGrace, Usage: registry.Limits{MaxRate: cfg.UsageMaxRate}})
	if err != nil {
		return err
	}
	if _, err := migrate.Run(ctx, env.JS, log); err != nil {
		return err
	}
	srvs, err := servers.Open(ctx, env.JS, env.Log.With(logkey.Component, "servers"), servers.Options{})
	if err != nil {
		return err
	}
	// Replicas starting together create the same durable consumers: a
	// create that races another is retried (as an update) with backoff.
	var cons, jobsCons jetstream.Consumer
	err = bus.Patiently(ctx, log, "provisioning consumers "+subject.ConsumerUsersUsage+" and "+subject.ConsumerUsersJobs, func(ctx context.Context) error {
		var err error
		if cons, err = env.JS.CreateOrUpdateConsumer(ctx, subject.StreamUsage, subject.UsersUsageConsumer()); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning consumer %s", subject.ConsumerUsersUsage)
		}
		if jobsCons, err = env.JS.CreateOrUpdateConsumer(ctx, subject.StreamJobs, subject.UsersJobsConsumer()); err != nil {
			return errs.Wrap(errs.Unavailable, err, "provisioning consumer %s", subject.ConsumerUsersJobs)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := reg.EnableAtomic(ctx); err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	idx := index.New()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return idx.Follow(gctx, reg.Users(), log, registry.Decode) })
	g.Go(func() error { return idx.FollowUsage(gctx, reg.Usage(), log) })
	for _, loaded := range []<-chan struct{}{idx.Ready(), idx.UsageReady()} {
		select {
		case <-loaded:
		case <-gctx.Done():
			return g.Wait()
		}
	}

	service, err := endpoints.Serve(gctx, env.NC, log, reg, idx, cfg.RequestTimeout)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	env.Requests.Add(service)
	g.Go(func() error {
		<-gctx.Done()
		if err := service.Stop(); err != nil {
			return fmt.Errorf("stopping users service: %w", err)
		}
		return nil
	})
	serversService, err := endpoints.ServeServers(gctx, env.NC, env.Log.With(logkey.Component, "servers"), srvs, cfg.RequestTimeout)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	env.Requests.Add(serversService)
	g.Go(func() error {
		<-gctx.Done()
		if err := serversService.Stop(); err != nil {
			return fmt.Errorf("stopping servers service: %w", err)
		}
		return nil
	})
	fl, err := fleet.Open(gctx, env.JS, cfg.Fleet, env.Log.With(logkey.Component, "fleet"))
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	fleetService, err := endpoints.ServeFleet(gctx, env.NC, env.Log.With(logkey.Component, "fleet"), fl, cfg.RequestTimeout)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	env.Requests.Add(fleetService)
	g.Go(func() error {
		<-gctx.Done()
		if err := fleetService.Stop(); err != nil {
			return fmt.Errorf("stopping fleet service: %w", err)
		}
		return nil
	})
	jobsLog := env.Log.With(logkey.Component, "jobs")
	jb, err := jobs.Open(gctx, env.JS, reg, idx, jobsLog, jobs.Options{BatchSize: cfg.JobBatch})
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	jobsService, err := endpoints.ServeJobs(gctx, env.NC, jobsLog, jb, cfg.RequestTimeout, cfg.JobTimeout)
	if err != nil {
		cancel()
		return errors.Join(err, g.Wait())
	}
	env.Requests.Add(jobsService)
	g.Go(func() error {
		<-gctx.Done()
		if err := jobsService.Stop(); err != nil {
			return fmt.Errorf("stopping jobs service: %w", err)
		}
		return nil
	})
	for range cfg.JobWorkers {
		g.Go(func() error {
			return bus.Consume(gctx, jobsCons, jobsLog.With(logkey.Consumer, subject.ConsumerUsersJobs),
				bus.ConsumeOptions{Timeout: cfg.JobTimeout, RetryBase: 50 * time.Millisecond, RetryMax: time.Second}, jb.Apply)
		})
	}
	g.Go(func() error {
		return bus.Consume(gctx, cons, log.With(logkey.Consumer, subject.ConsumerUsersUsage), bus.ConsumeOptions{},
			func(ctx context.Context, rec usage.Record) error { return reg.ApplyUsage(ctx, rec) })
	})
	g.Go(func() error { return enforce(gctx, reg, idx, cfg.EnforceInterval, log) })
	g.Go(func() error { return views.New(env.JS, env.Log.With(logkey.Component, "views")).Run(gctx) })
	log.Info("users service started", logkey.Count, idx.Len())
	err = g.Wait()
	log.Info("users service stopped")
	return err
}

// enforce settles every user whose expiry, quota or reset is due, until
// ctx ends. It scans every user every interval, and in between wakes at the
// next expiry or reset it knows of (from the last scan and from every user
// put into the index since), so a user expires when due, not up to an
// interval later. Replicas may do it at once: the writes are
// compare-and-set, so each change happens once.
func enforce(ctx context.Context, reg *registry.Registry, idx *index.Index, every time.Duration, log *slog.Logger) error {
	var due dueAt
	due.wake = make(chan struct{}, 1)
	idx.OnPut(func(u user.User) { due.offer(registry.NextDue(u, time.Now())) })
	scanned := time.Time{}
	for {
		now := time.Now()
		if scanned.IsZero() || !now.Before(scanned.Add(every)) || (due.passed(now) && !now.Before(scanned.Add(enforceGap))) {
			due.clear()
			scanned = now
			idx.Each(func(u user.User) bool {
				if ctx.Err() != nil {
					return false
				}
				if !registry.Due(u, now) {
					due.offer(registry.NextDue(u, now))
					return true
				}
				if _, err := reg.Enforce(ctx, u.ID); err != nil && ctx.Err() == nil {
					log.Warn("enforcing limits", logkey.User, u.ID, logkey.Err, err)
				}
				return true
			})
		}
		wait := time.Until(scanned.Add(every))
		if next := due.next(); !next.IsZero() {
			// At most one scan per enforceGap for due moments, however
			// many users fall due one after another.
			wait = min(wait, max(time.Until(next), time.Until(scanned.Add(enforceGap))))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-due.wake:
			t.Stop()
		}
	}
}

// enforceGap is the least time between two scans the enforcer makes for a
// due expiry or reset: the bound on how late one is enforced.
const enforceGap = 250 * time.Millisecond

// dueAt is the earliest moment some user's limits fall due, as far as the
// enforcer knows.
type dueAt struct {
	mu   sync.Mutex
	at   time.Time
	wake chan struct{} // poked when at moves earlier
}

// offer makes t the earliest due moment if it is earlier (zero is none).
func (d *dueAt) offer(t time.Time) {
	if t.IsZero() {
		return
	}
	d.mu.Lock()
	earlier := d.at.IsZero() || t.Before(d.at)
	if earlier {
		d.at = t
	}
	d.mu.Unlock()
	if earlier {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

func (d *dueAt) next() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at
}

func (d *dueAt) passed(now time.Time) bool {
	next := d.next()
	return !next.IsZero() && !now.Before(next)
}

// clear forgets the due moment before a scan, which finds it again.
func (d *dueAt) clear() {
	d.mu.Lock()
	d.at = time.Time{}
	d.mu.Unlock()
}

// FleetAuthority is what signs node credentials (see Config.Fleet).
type FleetAuthority = fleet.Authority

// EnrollLocal enrolls the node vpnd's own agent runs as (with groups) and
// returns the JWT of its credential for userPublicKey, a key vpnd keeps:
// no join token, the key never leaves the process.
func EnrollLocal(ctx context.Context, js jetstream.JetStream, auth *FleetAuthority, node string, groups []string, userPublicKey string) (string, error) {
	f, err := fleet.Open(ctx, js, auth, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", err
	}
	return f.EnrollLocal(ctx, node, groups, userPublicKey)
}
