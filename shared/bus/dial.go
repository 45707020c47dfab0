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
// retried with backoff (bus.Patiently, each failed attempt logged) until it
// succeeds or ctx ends, so services may start before the cluster; a
// credential the server refuses fails at once (Unauthorized), and so does
// a CA file that cannot be read (Invalid).
func Dial(ctx context.Context, cfg DialConfig, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.Timeout(2 * time.Second),
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
	var nc *nats.Conn
	err := Patiently(ctx, log, "connecting to nats at "+cfg.URL, func(context.Context) error {
		c, err := nats.Connect(cfg.URL, opts...)
		switch {
		case Refused(err):
			return errs.Wrap(errs.Unauthorized, err, "nats at %s refused the credential (unknown, expired or revoked: a revoked node needs `vpn nodes add` and a new join)", cfg.URL)
		case err != nil:
			return err
		}
		nc = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return nc, nil
}
