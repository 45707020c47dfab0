package bus

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
)

// DialConfig says how a service reaches NATS.
type DialConfig struct {
	URL   string // one or more comma-separated server URLs
	Creds string // optional credentials file
	CA    string // optional CA certificate (PEM) to trust for TLS, and no other
	Name  string // connection name shown by the server
}

// Refused reports whether err is the server refusing a credential, which
// retrying cannot change.
func Refused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked)
}

// Dial connects to NATS and keeps reconnecting forever with jittered
// backoff, logging disconnects and reconnects. The first connection is
// retried until ctx ends, so services can start before the cluster.
func Dial(ctx context.Context, cfg DialConfig, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", logkey.Err, err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", logkey.URL, nc.ConnectedUrlRedacted())
		}),
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.CA != "" {
		tc, err := natsauth.ClientConfigFromCAFile(cfg.CA)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "connecting to nats %s", cfg.URL)
	}
	// With RetryOnFailedConnect, Connect returns at once; wait for the
	// first real connection so callers can use JetStream immediately.
	for !nc.IsConnected() {
		if err := nc.LastError(); Refused(err) {
			nc.Close()
			return nil, errs.Wrap(errs.Unauthorized, err, "nats at %s refused the credential (unknown, expired or revoked: a revoked node needs `vpn nodes add` and a new join)", cfg.URL)
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, errs.Wrap(errs.Unavailable, ctx.Err(), "waiting for nats at %s", cfg.URL)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nc, nil
}
