// Package natsserver runs an embedded NATS server with JetStream for vpnd
// (and, through package natstest, for tests).
//
// Authentication is always on: the server trusts the operator of a
// natsauth.Trust and resolves its accounts, so every connection, the
// in-process ones too, presents a credential minted by that trust. A
// listener on anything but loopback must use TLS.
//
// JetStream stores on disk under the data dir and, by default, syncs to disk
// before acknowledging every write (sync_interval: always): a write that was
// acknowledged survives kill -9 and power loss. Operators may trade that for
// throughput with a positive SyncInterval, knowingly.
package natsserver

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
)

// Config describes the embedded server.
type Config struct {
	// DataDir holds the JetStream store (DataDir/jetstream).
	DataDir string
	// Listen is the client address (host:port, port 0 or -1 for a random
	// one). Empty means in-process only: no TCP port is opened and only
	// Connect reaches the server. Anything but a loopback address needs
	// TLS.
	Listen string
	// SyncInterval 0 means sync before every acknowledgement (the durable
	// default); a positive value flushes on that interval instead.
	SyncInterval time.Duration
	// ServerName names the server (defaults to "vpnd").
	ServerName string
	// Trust is the operator and accounts the server trusts; required.
	Trust *natsauth.Trust
	// TLS, when set, makes the listener require TLS. In-process
	// connections may still be plain.
	TLS *TLSFiles
	// MaxPayload is the largest message the server takes; 0 is NATS's
	// default of 1 MiB, what a cluster has unless configured otherwise.
	// vpnd passes EmbeddedMaxPayload.
	MaxPayload int32
	// Cluster, when set, makes the server one node of a NATS cluster with
	// clustered JetStream (streams and buckets replicated R3). Every
	// node trusts the same operator and accounts; each keeps its own
	// account store under its data dir.
	Cluster *Cluster
}

// Cluster is a node's place in a NATS cluster: the cluster's name, the
// address this node listens on for routes, and the route URLs of every
// node (its own may be among them). Routes must be on loopback (tests,
// one-machine rehearsals) unless the operator secures them outside.
type Cluster struct {
	Name   string
	Listen string
	Routes []string
}

// TLSFiles are the PEM files of the server's TLS: its certificate (which
// may carry its chain), its key, and the CA that signed it. The server
// presents the CA after its certificate, so that clients pinning the CA by
// fingerprint find it.
type TLSFiles struct {
	Cert, Key, CA string
}

// EmbeddedMaxPayload is vpnd's max_payload. Import files no longer need
// it (they travel through the job inputs object store in chunks) and
// pages of users are cut to what fits in one reply, so the product runs
// on a cluster's default 1 MiB (the gateway tests run on it); the headroom
// is kept for replies not yet cut by size, which answer
// message_too_large past a server's limit instead of never arriving.
const EmbeddedMaxPayload = 8 << 20

// Server is a running embedded NATS server.
type Server struct {
	ns      *server.Server
	cfg     Config
	service natsauth.Credential
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errs.Field("data_dir", "must be set for the embedded NATS server")
	}
	if cfg.Trust == nil {
		return nil, errs.New(errs.Internal, "starting embedded nats: no trust given (authentication is always on)")
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.DataDir, "jetstream"),
		NoSigs:     true,
		NoLog:      false,
		MaxPayload: cfg.MaxPayload,
	}
	if opts.ServerName == "" {
		opts.ServerName = "vpnd"
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		opts.SyncAlways = true
	}
	if err := listenOptions(opts, cfg); err != nil {
		return nil, err
	}
	service, err := cfg.Trust.ServiceCredential(opts.ServerName)
	if err != nil {
		return nil, err
	}
	if err := adoptGlobalAccount(opts.StoreDir, cfg.Trust.Account(), log); err != nil {
		return nil, err
	}
	if err := clusterOptions(opts, cfg.Cluster); err != nil {
		return nil, err
	}
	resolver := ""
	if cfg.Cluster != nil {
		// One account store per node: several nodes may share a trust
		// directory on one machine.
		resolver = filepath.Join(cfg.DataDir, "accounts")
	}
	if err := cfg.Trust.ConfigureServerAt(opts, resolver); err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		opts.AccountResolver.Close()
		return nil, errs.Wrap(errs.Invalid, err, "configuring embedded nats")
	}
	ns.SetLoggerV2(&slogAdapter{log: log}, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, errs.New(errs.Unavailable, "embedded nats did not become ready (is %s free?)", cfg.Listen)
	}
	return &Server{ns: ns, cfg: cfg, service: service}, nil
}

// clusterOptions sets the routes of a cluster node.
func clusterOptions(opts *server.Options, c *Cluster) error {
	if c == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return errs.Field("cluster.listen", "must be host:port")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return errs.Field("cluster.listen", "port must be 1-65535")
	}
	if c.Name == "" {
		return errs.Field("cluster.name", "must be set")
	}
	opts.Cluster = server.ClusterOpts{Name: c.Name, Host: host, Port: p}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return errs.Field("cluster.routes", fmt.Sprintf("%q is not a route URL (nats-route://host:port)", r))
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// listenOptions sets the listener: none, plain TCP on loopback, or TLS.
func listenOptions(opts *server.Options, cfg Config) error {
	if cfg.Listen == "" {
		opts.DontListen = true
		return nil
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return errs.Field("nats_listen", "must be host:port")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < -1 || p > 65535 {
		return errs.Field("nats_listen", "port must be 0-65535 (or -1 for random)")
	}
	if p == 0 {
		p = -1
	}
	if cfg.TLS == nil && !natsauth.IsLoopback(host) {
		return errs.Field("nats_listen",
			fmt.Sprintf("%s is reachable from other hosts and needs TLS (credentials and user secrets would cross the network in clear); use a loopback address or enable TLS", cfg.Listen))
	}
	opts.Host, opts.Port = host, p
	if cfg.TLS != nil {
		tc, err := serverTLS(*cfg.TLS)
		if err != nil {
			return err
		}
		opts.TLSConfig = tc
		opts.TLS = true
		opts.TLSTimeout = 5
	}
	return nil
}

// serverTLS loads the certificate and key and makes sure the CA follows
// the certificate in the chain the server presents.
func serverTLS(f TLSFiles) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "loading the nats tls certificate %s", f.Cert)
	}
	if f.CA != "" {
		data, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "reading the nats tls ca")
		}
		for rest := data; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				return nil, errs.Wrap(errs.Invalid, err, "reading the nats tls ca %s", f.CA)
			}
			if !inChain(cert.Certificate, b.Bytes) {
				cert.Certificate = append(cert.Certificate, b.Bytes)
			}
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

func inChain(chain [][]byte, der []byte) bool {
	for _, c := range chain {
		if bytes.Equal(c, der) {
			return true
		}
	}
	return false
}

// adoptGlobalAccount moves a JetStream store written before authentication
// (streams of the global account "$G") to the application account, so an
// upgraded vpnd keeps its users, servers and history. It runs only when
// the application account has no store yet.
func adoptGlobalAccount(storeDir, account string, log *slog.Logger) error {
	global, app := filepath.Join(storeDir, "jetstream", server.DEFAULT_GLOBAL_ACCOUNT), filepath.Join(storeDir, "jetstream", account)
	if _, err := os.Stat(global); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(app); err == nil {
		return nil
	}
	if err := os.Rename(global, app); err != nil {
		return errs.Wrap(errs.Invalid, err, "moving the jetstream store of %s to account %s", global, account)
	}
	log.Info("moved the jetstream store written before authentication to the application account",
		logkey.Path, app)
	return nil
}

// ClientURL is the URL clients dial (tls:// when the listener requires
// TLS), or "" when in-process only.
func (s *Server) ClientURL() string {
	if s.cfg.Listen == "" {
		return ""
	}
	addr := s.ns.Addr().(*net.TCPAddr)
	scheme := "nats"
	if s.cfg.TLS != nil {
		scheme = "tls"
	}
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, strconv.Itoa(addr.Port)))
}

// Connect opens a client connection in-process (no TCP), which works with
// or without a listening port, with the service credential minted at
// start ("service:<server name>").
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return s.ConnectAs(s.service, opts...)
}

// ConnectAs opens an in-process connection with cred.
func (s *Server) ConnectAs(cred natsauth.Credential, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns), nats.MaxReconnects(-1), cred.Option()}, opts...)
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
