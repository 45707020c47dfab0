package natstest

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// Cluster is a test's NATS cluster: n real nats-server nodes in this
// process, each with its own data dir, client port and route port on
// loopback, clustered JetStream (R3 streams and buckets work), and the
// same authentication as Start: one trust (operator and accounts) that
// every node resolves, and a service credential for the clients.
//
// NewCluster only chooses ports and mints the trust, so a test can start
// its services first and the nodes later (StartNode, StartAll), as an
// operator whose cluster is still coming up would.
type Cluster struct {
	t       testing.TB
	name    string
	trust   *natsauth.Trust
	service natsauth.Credential
	nodes   []*clusterNode

	credsOnce sync.Once
	credsFile string
}

type clusterNode struct {
	dir, listen, route string

	mu  sync.Mutex
	srv *natsserver.Server
}

// NewCluster prepares a cluster of n nodes and starts none of them; every
// node still running at cleanup is stopped.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	dir := t.TempDir()
	trust, service := testTrust(t, dir)
	c := &Cluster{t: t, name: "vpntest", trust: trust, service: service}
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{
			dir:    filepath.Join(dir, fmt.Sprintf("n%d", i)),
			listen: "127.0.0.1:" + freePort(t),
			route:  "127.0.0.1:" + freePort(t),
		})
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.StopNode(i)
		}
	})
	return c
}

// StartCluster starts a cluster of n nodes and waits until its JetStream
// answers (a meta leader is elected). It provisions nothing.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := NewCluster(t, n)
	c.StartAll()
	c.WaitJetStream(time.Minute)
	return c
}

// StartNode starts node i (again, after StopNode, on the same ports and
// data dir).
func (c *Cluster) StartNode(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	routes := make([]string, 0, len(c.nodes))
	for _, o := range c.nodes {
		routes = append(routes, "nats-route://"+o.route)
	}
	srv, err := natsserver.Start(natsserver.Config{
		DataDir:    nd.dir,
		Listen:     nd.listen,
		ServerName: fmt.Sprintf("%s-%d", c.name, i),
		Trust:      c.trust,
		Cluster:    &natsserver.Cluster{Name: c.name, Listen: nd.route, Routes: routes},
	}, Logger(c.t).With(logkey.NATSNode, i))
	if err != nil {
		c.t.Fatalf("starting nats node %d: %v", i, err)
	}
	nd.mu.Lock()
	nd.srv = srv
	nd.mu.Unlock()
}

// StartAll starts every node at once.
func (c *Cluster) StartAll() {
	c.t.Helper()
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.StartNode(i) })
	}
	wg.Wait()
}

// StopNode stops node i, as a crashed or stopped NATS node; stopping a
// stopped node is harmless.
func (c *Cluster) StopNode(i int) {
	nd := c.nodes[i]
	nd.mu.Lock()
	srv := nd.srv
	nd.srv = nil
	nd.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
	}
}

// URLs is the client URL of every node, comma-separated, as a service's
// --nats-url takes them.
func (c *Cluster) URLs() string {
	urls := make([]string, 0, len(c.nodes))
	for _, nd := range c.nodes {
		urls = append(urls, "nats://"+nd.listen)
	}
	return strings.Join(urls, ",")
}

// Trust is the operator and accounts every node trusts.
func (c *Cluster) Trust() *natsauth.Trust { return c.trust }

// ServiceCredsFile is the service credential as a creds file, for
// --nats-creds.
func (c *Cluster) ServiceCredsFile() string {
	c.t.Helper()
	c.credsOnce.Do(func() { c.credsFile = CredsFile(c.t, c.service) })
	return c.credsFile
}

// Conn dials the cluster (any node) with the service credential and
// reconnects forever; it is closed at cleanup.
func (c *Cluster) Conn(opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	all := append([]nats.Option{c.service.Option(), nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond),
		nats.RetryOnFailedConnect(true)}, opts...)
	nc, err := nats.Connect(c.URLs(), all...)
	if err != nil {
		c.t.Fatalf("connecting to the test cluster: %v", err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream handle over a new connection.
func (c *Cluster) JetStream() jetstream.JetStream {
	c.t.Helper()
	js, err := jetstream.New(c.Conn())
	if err != nil {
		c.t.Fatalf("jetstream: %v", err)
	}
	return js
}

// WaitJetStream waits until the cluster's JetStream answers an account
// info request, i.e. it has a meta leader.
func (c *Cluster) WaitJetStream(within time.Duration) {
	c.t.Helper()
	js := c.JetStream()
	waitfor.Cond(c.t, within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})
}
