// Package natstest starts a real in-process NATS server with JetStream for
// a test: file storage in the test's temp dir, durable sync, a random
// loopback port, everything provisioned, and cleanup registered.
//
// Authentication is on, as in production: the server trusts a
// natsauth.Trust kept in the data dir, Conn and JetStream connect with a
// service credential, NodeConn with a node's own credential, and Revoke
// revokes a credential the way the registry does.
package natstest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Server is a test's NATS server. Restart keeps its data dir, keys and
// port, so tests can prove durability and reconnection.
type Server struct {
	t       testing.TB
	dataDir string
	listen  string
	trust   *natsauth.Trust
	service natsauth.Credential
	// maxPayload is the server's max_payload.
	maxPayload int32

	mu        sync.Mutex
	srv       *natsserver.Server
	credsFile string
}

// Options tunes Start.
type Options struct {
	// NoProvision skips creating the declared streams and buckets.
	NoProvision bool
	// DataDir reuses a directory instead of a fresh temp dir.
	DataDir string
	// MaxPayload is the server's max_payload: 0 is vpnd's
	// (natsserver.EmbeddedMaxPayload), DefaultMaxPayload a cluster's.
	MaxPayload int32
}

// DefaultMaxPayload is NATS's default max_payload (1 MiB), which a
// cluster has unless its operator raises it.
const DefaultMaxPayload = 1 << 20

// Start starts a server for t and provisions every stream and bucket.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith starts a server with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	dir := o.DataDir
	if dir == "" {
		dir = t.TempDir()
	}
	trust, service := testTrust(t, dir)
	maxPayload := o.MaxPayload
	if maxPayload == 0 {
		maxPayload = natsserver.EmbeddedMaxPayload
	}
	s := &Server{t: t, dataDir: dir, listen: "127.0.0.1:" + freePort(t), trust: trust, service: service, maxPayload: maxPayload}
	s.start()
	t.Cleanup(s.Shutdown)
	if !o.NoProvision {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := bus.Provision(ctx, s.JetStream(), 1); err != nil {
			t.Fatalf("provisioning: %v", err)
		}
	}
	return s
}

// testTrust loads (or makes) the trust kept under dir/trust and mints the
// service credential the test's clients use.
func testTrust(t testing.TB, dir string) (*natsauth.Trust, natsauth.Credential) {
	t.Helper()
	trust, err := natsauth.LoadOrCreate(filepath.Join(dir, "trust"))
	if err != nil {
		t.Fatalf("loading the test trust: %v", err)
	}
	service, err := trust.ServiceCredential("natstest")
	if err != nil {
		t.Fatalf("minting the test service credential: %v", err)
	}
	return trust, service
}

func (s *Server) start() {
	s.t.Helper()
	srv, err := natsserver.Start(natsserver.Config{DataDir: s.dataDir, Listen: s.listen, Trust: s.trust, MaxPayload: s.maxPayload}, Logger(s.t))
	if err != nil {
		s.t.Fatalf("starting nats: %v", err)
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
}

// URL is the client URL. Every connection needs a credential: pass
// ServiceCredsFile to a binary's --nats-creds.
func (s *Server) URL() string { return "nats://" + s.listen }

// DataDir is where JetStream stores.
func (s *Server) DataDir() string { return s.dataDir }

// Trust is the operator and accounts the server trusts, for tests that
// mint their own credentials.
func (s *Server) Trust() *natsauth.Trust { return s.trust }

// ServiceCredential is the credential Conn and JetStream use: full access
// to the application account, as the services have.
func (s *Server) ServiceCredential() natsauth.Credential { return s.service }

// ServiceCredsFile is the service credential as a creds file (0600, in the
// test's temp dir), for binaries started with --nats-creds.
func (s *Server) ServiceCredsFile() string {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.credsFile == "" {
		s.credsFile = CredsFile(s.t, s.service)
	}
	return s.credsFile
}

// CredsFile writes cred as a creds file (0600) in t's temp dir and returns
// its path.
func CredsFile(t testing.TB, cred natsauth.Credential) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "user.creds")
	if err := natsauth.WriteCredsFile(path, cred); err != nil {
		t.Fatalf("writing creds file: %v", err)
	}
	return path
}

// Conn dials a new client connection over TCP with the service credential
// that reconnects forever; it is closed at test cleanup. opts come last
// and so override the defaults.
func (s *Server) Conn(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	return s.ConnAs(s.t, s.service, opts...)
}

// ConnAs dials a connection with cred that reconnects forever (until the
// server refuses its credential twice); it is closed at t's cleanup.
func (s *Server) ConnAs(t testing.TB, cred natsauth.Credential, opts ...nats.Option) *nats.Conn {
	t.Helper()
	all := append([]nats.Option{cred.Option(), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(s.URL(), all...)
	if err != nil {
		t.Fatalf("connecting to test nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// NodeCredential mints node's credential the way a joining agent gets it:
// a fresh user key whose seed stays here, and a node JWT for its public
// key (subject.NodePermissions).
func (s *Server) NodeCredential(t testing.TB, node string) natsauth.Credential {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatalf("creating a node key: %v", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	token, err := s.trust.NodeJWT(node, pub)
	if err != nil {
		t.Fatalf("minting the credential of node %s: %v", node, err)
	}
	return natsauth.Credential{JWT: token, Seed: seed}
}

// NodeConn dials as node would: a fresh node credential and the node's
// inbox prefix (replies and watches arrive only there). It is closed at
// t's cleanup.
func (s *Server) NodeConn(t testing.TB, node string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{nats.CustomInboxPrefix(subject.NodeInboxPrefix(node)), nats.Name("node:" + node)}, opts...)
	return s.ConnAs(t, s.NodeCredential(t, node), opts...)
}

// Revoke revokes every credential of userPublicKey through the system
// account, as the registry does; the server has closed its connections
// when Revoke returns.
func (s *Server) Revoke(userPublicKey string) {
	s.t.Helper()
	sys, err := s.trust.SystemCredential("natstest")
	if err != nil {
		s.t.Fatalf("minting a system credential: %v", err)
	}
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	nc, err := srv.ConnectAs(sys)
	if err != nil {
		s.t.Fatalf("connecting to the system account: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.trust.Revoke(ctx, nc, userPublicKey); err != nil {
		s.t.Fatalf("revoking %s: %v", userPublicKey, err)
	}
}

// JetStream returns a JetStream handle over a new connection.
func (s *Server) JetStream() jetstream.JetStream {
	s.t.Helper()
	js, err := jetstream.New(s.Conn())
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Shutdown stops the server; calling it twice is harmless.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// Restart stops the server and starts it again on the same port and data
// dir, as an operator restarting NATS would.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.start()
}

// Logger returns a logger that writes to the test log at debug level, or
// discards when the test is not verbose.
func Logger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// LogWriter is where a service under test writes its JSON log: the test
// log when verbose, else nowhere.
func LogWriter(t testing.TB) io.Writer {
	if !testing.Verbose() {
		return io.Discard
	}
	return tWriter{t}
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
