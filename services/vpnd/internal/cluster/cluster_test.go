package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/cluster"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// generated is a cluster written by Init whose three nats-servers run in
// this process from the generated configuration files; only what one
// machine cannot share is changed after parsing (each node's ports, the
// routes' addresses, no monitoring port).
type generated struct {
	dir     string
	clients []string // client host:port of each node
	servers []*server.Server
	mu      sync.Mutex
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startGenerated runs `vpn-cluster init` for three nodes (once per node,
// for the node's own store dir: a second run keeps every key) and starts
// the three servers from their configuration files.
func startGenerated(t *testing.T) *generated {
	t.Helper()
	g := &generated{dir: t.TempDir()}
	confs := make([]string, 3)
	for i := range 3 {
		o := cluster.Defaults()
		o.Dir = g.dir
		o.ConfigRoot = filepath.Join(g.dir, cluster.NATSDir)
		o.StoreDir = filepath.Join(g.dir, fmt.Sprintf("store-%d", i))
		res, err := cluster.Init(o)
		if err != nil {
			t.Fatalf("init: %v", err)
		}
		data, err := os.ReadFile(res.Configs[i])
		if err != nil {
			t.Fatal(err)
		}
		confs[i] = filepath.Join(g.dir, fmt.Sprintf("node-%d.conf", i))
		if err := os.WriteFile(confs[i], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clientPorts, routePorts := make([]int, 3), make([]int, 3)
	for i := range 3 {
		clientPorts[i], routePorts[i] = freePort(t), freePort(t)
		g.clients = append(g.clients, "127.0.0.1:"+strconv.Itoa(clientPorts[i]))
	}
	g.servers = make([]*server.Server, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			opts, err := server.ProcessConfigFile(confs[i])
			if err != nil {
				t.Errorf("node %d: the generated config does not parse: %v", i, err)
				return
			}
			opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", clientPorts[i], 0
			opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", routePorts[i]
			for j, r := range opts.Routes {
				n, err := strconv.Atoi(strings.TrimPrefix(r.Hostname(), "nats-"))
				if err != nil {
					t.Errorf("node %d: route %s does not name a node", i, r.Redacted())
					return
				}
				u := *r
				u.Host = "127.0.0.1:" + strconv.Itoa(routePorts[n-1])
				opts.Routes[j] = &u
			}
			opts.NoSigs = true
			s, err := server.NewServer(opts)
			if err != nil {
				t.Errorf("node %d: %v", i, err)
				return
			}
			s.SetLoggerV2(natsLogger{t}, false, false, false)
			s.Start()
			if !s.ReadyForConnections(10 * time.Second) {
				t.Errorf("node %d did not become ready", i)
			}
			g.mu.Lock()
			g.servers[i] = s
			g.mu.Unlock()
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range g.servers {
			g.stop(i)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	return g
}

func (g *generated) stop(i int) {
	g.mu.Lock()
	s := g.servers[i]
	g.servers[i] = nil
	g.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

func (g *generated) urls() string {
	var u []string
	for _, c := range g.clients {
		u = append(u, "tls://"+c)
	}
	return strings.Join(u, ",")
}

func (g *generated) path(parts ...string) string {
	return filepath.Join(append([]string{g.dir}, parts...)...)
}

type natsLogger struct{ t *testing.T }

func (l natsLogger) Noticef(string, ...any)    {}
func (l natsLogger) Warnf(f string, v ...any)  { l.t.Logf("nats: "+f, v...) }
func (l natsLogger) Fatalf(f string, v ...any) { l.t.Logf("nats fatal: "+f, v...) }
func (l natsLogger) Errorf(f string, v ...any) { l.t.Logf("nats: "+f, v...) }
func (l natsLogger) Debugf(string, ...any)     {}
func (l natsLogger) Tracef(string, ...any)     {}
func (g *generated) serviceConn(t *testing.T, name string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(g.urls(), nats.UserCredentials(g.path(cluster.ServicesDir, name+".creds")),
		nats.RootCAs(g.path(cluster.ServicesDir, "ca.pem")), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("%s connecting with its generated credential: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestGeneratedClusterServesTheFleet: the three servers of a generated
// cluster form one clustered JetStream with TLS and the generated
// accounts; every service authenticates with its creds file over TLS;
// vpn-users, given only the signer directory, provisions R3 streams and
// buckets, enrolls a node whose agent joins with the token over TLS and
// holds exactly the node's permissions, refuses to revoke (it holds no
// operator key) without changing the enrollment, and keeps serving when
// a NATS node is stopped.
func TestGeneratedClusterServesTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster; -short skips it")
	}
	g := startGenerated(t)
	for _, name := range cluster.Services {
		nc := g.serviceConn(t, name)
		if !nc.TLSRequired() {
			t.Fatalf("%s connected without TLS", name)
		}
	}
	js, err := jetstream.New(g.serviceConn(t, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})

	// vpn-users as the binary runs it, with the signer directory.
	base := svc.Defaults("")
	base.NATSURL, base.NATSCreds, base.NATSCA, base.Replicas = g.urls(), g.path(cluster.ServicesDir, "users.creds"), g.path(cluster.ServicesDir, "ca.pem"), 3
	ucfg := users.Defaults()
	ucfg.NATSTrust = g.path(cluster.SignerDir)
	ucfg.JoinURLs = strings.Split(g.urls(), ",")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- svc.Standalone(ctx, "vpn-users", "test", base, natstest.LogWriter(t),
			func(ctx context.Context, env svc.Env) error { return users.Run(ctx, ucfg, env) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("vpn-users: %v", err)
		}
	})

	nc := g.serviceConn(t, "gateway")
	var added node.AddResponse
	waitfor.Cond(t, 2*time.Minute, func() error {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		var err error
		added, err = bus.Request[node.AddResponse](rctx, nc, subject.FleetCmd(subject.FleetAdd), node.AddRequest{Node: "edge-1"})
		return err
	})

	for _, name := range []string{subject.StreamEvents, subject.StreamUsage, "KV_" + subject.BucketEnrollments} {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", name, r)
		}
	}

	// The agent joins with the token, over TLS pinned to the cluster's CA.
	jctx, jcancel := context.WithTimeout(context.Background(), time.Minute)
	defer jcancel()
	joined, err := agent.Join(jctx, added.Token, t.TempDir())
	if err != nil {
		t.Fatalf("joining with the token of the users service: %v", err)
	}
	opts, err := joined.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	violations := make(chan string, 16)
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		violations <- err.Error()
	}))
	nodeConn, err := nats.Connect(joined.ServerURLs(), opts...)
	if err != nil {
		t.Fatalf("the node connecting with its credential: %v", err)
	}
	defer nodeConn.Close()
	if !nodeConn.TLSRequired() {
		t.Fatal("the node connected without TLS")
	}

	// Exactly the node's permissions: the JWT the signer minted carries
	// subject.NodePermissions and nothing else...
	credJWT, err := jwt.ParseDecoratedJWT(mustRead(t, joined.CredsFile))
	if err != nil {
		t.Fatal(err)
	}
	claims, err := jwt.DecodeUserClaims(credJWT)
	if err != nil {
		t.Fatal(err)
	}
	want := subject.NodePermissions("edge-1")
	if !slices.Equal(claims.Pub.Allow, jwt.StringList(want.Publish)) || !slices.Equal(claims.Sub.Allow, jwt.StringList(want.Subscribe)) ||
		len(claims.Pub.Deny)+len(claims.Sub.Deny) != 0 || claims.Resp == nil {
		t.Fatalf("node permissions %+v, want %+v", claims.Permissions, want)
	}
	// ...and the servers enforce them: the node's own usage subject is
	// allowed, the users service is not.
	if err := nodeConn.Publish(subject.UsersCmd(subject.UsersCreate), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-violations:
		if !strings.Contains(v, "Permissions Violation") || !strings.Contains(v, subject.UsersCmd(subject.UsersCreate)) {
			t.Fatalf("violation %q", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("publishing to the users service as a node was not refused")
	}

	// Revoking needs the operator key: refused, the enrollment unchanged.
	_, err = bus.Request[node.Enrollment](context.Background(), nc, subject.FleetCmd(subject.FleetRevoke), node.NodeRequest{Node: "edge-1"})
	if !errors.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "operator key") {
		t.Fatalf("revoke with a signer: %v, want Unavailable naming the operator key", err)
	}
	if nodeConn.IsClosed() {
		t.Fatal("the refused revocation closed the node's connection")
	}
	if err := nodeConn.Flush(); err != nil {
		t.Fatalf("the node's connection after the refused revocation: %v", err)
	}

	// One NATS node down: the users service still creates users.
	g.stop(0)
	waitfor.Cond(t, time.Minute, func() error {
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		_, err := bus.Request[user.User](rctx, nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: "after-kill", IdempotencyKey: "after-kill"})
		return err
	})
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestInitRefusesBadOptions: every bad option is one field error naming
// the field and the rule, and nothing is written.
func TestInitRefusesBadOptions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	o := cluster.Defaults()
	o.Dir, o.Nodes, o.Hosts, o.Name, o.ClientPort, o.ConfigRoot = dir, 4, []string{"a", "b_c", "a"}, "no spaces", 70000, "etc/nats"
	_, err := cluster.Init(o)
	if !errors.Is(err, errs.Invalid) {
		t.Fatalf("err %v, want Invalid", err)
	}
	got := map[string]bool{}
	for _, fe := range errs.FieldsOf(err) {
		got[fe.Field] = true
	}
	for _, f := range []string{"nodes", "hosts", "hosts[1]", "hosts[2]", "name", "client_port", "config_root"} {
		if !got[f] {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused init wrote %s (%v)", dir, err)
	}
	if _, err := cluster.Init(cluster.Options{}); len(errs.FieldsOf(err)) == 0 || !strings.Contains(err.Error(), "dir: must be set") {
		t.Fatalf("empty options: %v", err)
	}
}
