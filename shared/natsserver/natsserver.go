// Package natsserver runs an embedded NATS server with JetStream for vpnd
// (and, through package natstest, for tests).
//
// JetStream stores on disk under the data dir and, by default, syncs to disk
// before acknowledging every write (sync_interval: always): a write that was
// acknowledged survives kill -9 and power loss. Operators may trade that for
// throughput with a positive SyncInterval, knowingly.
package natsserver

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Config describes the embedded server.
type Config struct {
	// DataDir holds the JetStream store (DataDir/jetstream).
	DataDir string
	// Listen is the client address (host:port, port 0 or -1 for a random
	// one). Empty means in-process only: no TCP port is opened and only
	// Connect reaches the server.
	Listen string
	// SyncInterval 0 means sync before every acknowledgement (the durable
	// default); a positive value flushes on that interval instead.
	SyncInterval time.Duration
	// ServerName names the server (defaults to "vpnd").
	ServerName string
}

// Server is a running embedded NATS server.
type Server struct {
	ns  *server.Server
	cfg Config
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errs.Field("data_dir", "must be set for the embedded NATS server")
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		NoSigs:     true,
		NoLog:      false,
		MaxPayload: 8 << 20,
	}
	if opts.ServerName == "" {
		opts.ServerName = "vpnd"
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		opts.SyncAlways = true
	}
	if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, errs.Field("nats_listen", "must be host:port")
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < -1 || p > 65535 {
			return nil, errs.Field("nats_listen", "port must be 0-65535 (or -1 for random)")
		}
		if p == 0 {
			p = -1
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "configuring embedded nats")
	}
	ns.SetLoggerV2(&slogAdapter{log: log}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errs.New(errs.Unavailable, "embedded nats did not become ready (is %s free?)", cfg.Listen)
	}
	return &Server{ns: ns, cfg: cfg}, nil
}

// ClientURL is the nats:// URL clients dial, or "" when in-process only.
func (s *Server) ClientURL() string {
	if s.cfg.Listen == "" {
		return ""
	}
	return s.ns.ClientURL()
}

// Connect opens a client connection in-process (no TCP), which works with
// or without a listening port.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting in-process: %w", err)
	}
	return nc, nil
}

// NATS exposes the underlying server for tests and diagnostics.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped, flushing the
// store.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// slogAdapter routes the server's logs into slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) {
	a.log.Debug("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
func (a *slogAdapter) Warnf(format string, v ...any) {
	a.log.Warn("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
func (a *slogAdapter) Fatalf(format string, v ...any) {
	a.log.Error("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
func (a *slogAdapter) Errorf(format string, v ...any) {
	a.log.Error("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
func (a *slogAdapter) Debugf(format string, v ...any) {
	a.log.Debug("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
func (a *slogAdapter) Tracef(format string, v ...any) {
	a.log.Debug("nats server", logkey.Detail, fmt.Sprintf(format, v...))
}
