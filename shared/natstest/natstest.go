// Package natstest starts a real in-process NATS server with JetStream for
// a test: file storage in the test's temp dir, durable sync, a random
// loopback port, everything provisioned, and cleanup registered.
package natstest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
)

// Server is a test's NATS server. Restart keeps its data dir and port, so
// tests can prove durability and reconnection.
type Server struct {
	t       testing.TB
	dataDir string
	listen  string
	srv     *natsserver.Server
}

// Options tunes Start.
type Options struct {
	// NoProvision skips creating the declared streams and buckets.
	NoProvision bool
	// DataDir reuses a directory instead of a fresh temp dir.
	DataDir string
}

// Start starts a server for t and provisions every stream and bucket.
func Start(t testing.TB) *Server { return StartWith(t, Options{}) }

// StartWith starts a server with options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	dir := o.DataDir
	if dir == "" {
		dir = t.TempDir()
	}
	s := &Server{t: t, dataDir: dir, listen: "127.0.0.1:" + freePort(t)}
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

func (s *Server) start() {
	s.t.Helper()
	srv, err := natsserver.Start(natsserver.Config{DataDir: s.dataDir, Listen: s.listen}, Logger(s.t))
	if err != nil {
		s.t.Fatalf("starting nats: %v", err)
	}
	s.srv = srv
}

// URL is the client URL.
func (s *Server) URL() string { return "nats://" + s.listen }

// DataDir is where JetStream stores.
func (s *Server) DataDir() string { return s.dataDir }

// Conn dials a new client connection over TCP that reconnects forever; it
// is closed at test cleanup.
func (s *Server) Conn() *nats.Conn {
	s.t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		s.t.Fatalf("connecting to test nats: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
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
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
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
