package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/reconcile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/linktest"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// sni is the server name REALITY inbounds of these tests borrow, served by
// the local TLS dest.
const sni = "www.example.com"

// Generous deadlines: the machine is shared.
const (
	applyWait   = 90 * time.Second
	convergeFor = 60 * time.Second
)

// fleet is one node of a real fleet in a test: an in-process JetStream
// server, the user registry (users.Run) and a real agent with a real
// runtime running the pinned Xray. The agent can be stopped and started
// again on the same data dir, as an operator or a crash would.
type fleet struct {
	t       testing.TB
	ns      *natstest.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	node    string
	runtime string
	dataDir string
	xrayBin string
	image   string
	drift   time.Duration // agent's drift interval; 0 keeps the default
	usage   time.Duration // agent's usage interval; 0 keeps the default
	// firstReply is the agent's first receive limit for Xray API replies
	// (agent.Config.XrayFirstReply); 0 keeps the default.
	firstReply int
	// blockPrivate starts agents with AllowPrivateNetworks off (the
	// product's default); tests reach their loopback targets otherwise.
	blockPrivate bool
	// xrayUser, when set, is the agents' --xray-user.
	xrayUser string

	mu        sync.Mutex
	agent     *agent.Agent
	metrics   *prometheus.Registry // the current agent's
	stopAgent func()
}

// newFleet starts NATS and the registry; startAgent starts the agent.
func newFleet(t testing.TB, rt string) *fleet {
	t.Helper()
	ns := natstest.Start(t)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{
		t: t, ns: ns, nc: nc, js: js, node: runtimetest.NewNode("srv"), runtime: rt,
		dataDir: t.TempDir(), xrayBin: xraytest.Binary(t),
	}
	if rt == "process" {
		// A process Xray runs as the unprivileged Xray user, which must
		// reach its binary and data dir: test temp dirs and the binary
		// cache under /root are closed to it.
		f.dataDir, f.xrayBin = runtimetest.PassableDir(t), runtimetest.WorldExecutable(t, f.xrayBin)
	}
	if rt != "process" {
		// A tag no engine has: the agent must build and import the image
		// from the binary, as on a host with no registry.
		f.image = fmt.Sprintf("vpnfleet/xray-test:%s", strings.TrimPrefix(f.node, "srv-"))
		t.Cleanup(func() {
			if rt == "containerd" {
				cfg := f.agentConfig()
				_ = exec.Command("ctr", "-a", cfg.ContainerdAddr, "-n", "vpn", "images", "rm", "docker.io/"+f.image).Run()
				return
			}
			_ = exec.Command("docker", "rmi", "-f", f.image).Run()
		})
	}
	// Registered before the agent's stop, so it runs after it: Xray
	// outlives its agent by design, the test must not leave it behind.
	t.Cleanup(f.removeWorkloads)

	uenv := svc.Env{NC: ns.Conn(), Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	if uenv.JS, err = jetstream.New(uenv.NC); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- users.Run(ctx, users.Defaults(), uenv) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("users.Run: %v", err)
		}
	})
	waitfor.Cond(t, 30*time.Second, func() error {
		_, err := bus.Request[user.CountResponse](f.ctx(), nc, subject.UsersCmd(subject.UsersCount), user.Filter{})
		return err
	})
	return f
}

// restartRedeploys stops the agent, calls change (an agent option), starts
// it again and waits until the adopted Xray of srv, which ran the old
// option, is replaced by one holding users.
func (f *fleet) restartRedeploys(srv server.Server, users []string, what string, change func()) {
	f.t.Helper()
	old, err := f.running(srv.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	f.stop()
	change()
	f.startAgent()
	waitfor.Cond(f.t, applyWait, func() error {
		rs, err := f.running(srv.ID)
		if err != nil {
			return err
		}
		if rs.Instance == old.Instance {
			return fmt.Errorf("xray %s still runs %s", rs.Instance, what)
		}
		return nil
	})
	f.waitXrayHolds(srv, users, what)
}

// assertUnprivileged checks, from /proc, that the Xray of server id runs
// as the Xray user with no capability, no_new_privs set.
func (f *fleet) assertUnprivileged(id string) {
	f.t.Helper()
	rs, err := f.running(id)
	if err != nil {
		f.t.Fatal(err)
	}
	w, err := f.agentRuntime().Inspect(f.ctx(), rs.Workload)
	if err != nil {
		f.t.Fatal(err)
	}
	st, err := runtimetest.ReadProcStatus(w.PID)
	if err != nil {
		f.t.Fatalf("reading the status of xray (pid %d): %v", w.PID, err)
	}
	if st.UIDs != [4]uint32{65532, 65532, 65532, 65532} || st.CapEff != 0 || st.CapPrm != 0 || !st.NoNewPrivs {
		f.t.Errorf("xray runs with uids %v CapEff %#x CapPrm %#x NoNewPrivs %v; want uid 65532, no capability, no_new_privs",
			st.UIDs, st.CapEff, st.CapPrm, st.NoNewPrivs)
	}
}

func (f *fleet) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	f.t.Cleanup(cancel)
	return ctx
}

func (f *fleet) agentConfig() agent.Config {
	cfg := agent.DefaultConfig()
	cfg.NodeID = f.node
	cfg.Runtime = f.runtime
	cfg.PublicAddr = "127.0.0.1"
	cfg.Heartbeat = time.Second
	cfg.StatsInterval = time.Minute
	cfg.XrayBin = f.xrayBin
	cfg.XrayImage = f.image
	if a := os.Getenv("CONTAINERD_ADDRESS"); a != "" {
		cfg.ContainerdAddr = a
	} else if !socketUp(cfg.ContainerdAddr) {
		cfg.ContainerdAddr = "/var/run/docker/containerd/containerd.sock" // Docker's own
	}
	cfg.AllowPrivateNetworks = !f.blockPrivate // the targets are on loopback
	if f.xrayUser != "" {
		cfg.XrayUser = f.xrayUser
	}
	if f.drift > 0 {
		cfg.DriftInterval = f.drift
	}
	if f.usage > 0 {
		cfg.UsageInterval = f.usage
	}
	cfg.XrayFirstReply = f.firstReply
	return cfg
}

// startAgent runs an agent on the fleet's data dir until stopAgent.
func (f *fleet) startAgent() *agent.Agent {
	f.t.Helper()
	// The agent holds its node's credential, as on a real host: it reads
	// its own view and writes its own status, nothing else.
	nc := f.ns.NodeConn(f.t, f.node)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	env := svc.Env{NC: nc, JS: js, Log: natstest.Logger(f.t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: f.dataDir}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, f.agentConfig(), env, nil)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("agent run: %v", err)
			}
			a.Runtime().Close()
			nc.Close()
		})
	}
	f.t.Cleanup(stop)
	f.mu.Lock()
	f.agent, f.metrics, f.stopAgent = a, env.Metrics, stop
	f.mu.Unlock()
	return a
}

func (f *fleet) stop() {
	f.mu.Lock()
	stop := f.stopAgent
	f.agent, f.stopAgent = nil, nil
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (f *fleet) currentAgent() *agent.Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.agent
}

// removeWorkloads removes every Xray the fleet's agents left, on every
// runtime of the host.
func (f *fleet) removeWorkloads() {
	cfg := f.agentConfig()
	rt, err := agent.OpenRuntimes(context.Background(), cfg, f.node, f.dataDir, natstest.Logger(f.t))
	if err != nil {
		f.t.Logf("opening runtime to clean up: %v", err)
		return
	}
	defer rt.Close()
	ws, err := rt.List(context.Background())
	if err != nil {
		f.t.Logf("listing workloads to clean up: %v", err)
		return
	}
	for _, w := range ws {
		if err := rt.Remove(context.Background(), w.ID); err != nil {
			f.t.Logf("removing %s: %v", w.Name, err)
		}
	}
}

// agentRuntime is the running agent's runtime, to look at Xray as the agent
// sees it. (A second process runtime over the same data dir would
// supervise the same processes: never open one while an agent runs.)
func (f *fleet) agentRuntime() runtime.Runtime {
	f.t.Helper()
	a := f.currentAgent()
	if a == nil {
		f.t.Fatal("no agent running")
	}
	return a.Runtime()
}

// testServer is a desired server with one inbound of each protocol on
// free loopback ports, REALITY borrowing dest.
func (f *fleet) testServer(name, dest string) server.Server {
	f.t.Helper()
	kp, err := xray.NewX25519KeyPair()
	if err != nil {
		f.t.Fatal(err)
	}
	sid, err := xray.NewShortID()
	if err != nil {
		f.t.Fatal(err)
	}
	ssKey, err := xray.NewSS2022Key(xray.SS2022AES128GCM)
	if err != nil {
		f.t.Fatal(err)
	}
	port := func() int { return xraytest.FreePort(f.t) }
	now := time.Now().UTC()
	return server.Server{
		ID: newID(f.t), Node: f.node, Name: name, Engine: server.EngineXray,
		Inbounds: []server.Inbound{
			{Tag: "vless", Protocol: user.VLESSReality, Port: port(), Listen: "127.0.0.1", Reality: &server.Reality{
				ServerNames: []string{sni}, Dest: dest, PrivateKey: kp.PrivateKey, PublicKey: kp.PublicKey, ShortIDs: []string{sid},
			}},
			{Tag: "ss", Protocol: user.Shadowsocks2022, Port: port(), Listen: "127.0.0.1", Shadowsocks: &server.Shadowsocks{
				Method: user.SS2022AES128GCM, ServerKey: ssKey,
			}},
			{Tag: "socks", Protocol: user.SOCKS5, Port: port(), Listen: "127.0.0.1"},
			{Tag: "http", Protocol: user.HTTP, Port: port(), Listen: "127.0.0.1"},
		},
		Status:    server.Status{State: server.StatePending},
		CreatedAt: now, UpdatedAt: now,
	}
}

// inboundRequests asks for one inbound of each protocol on free loopback
// ports, REALITY borrowing dest; ports overrides the port of a tag.
func inboundRequests(t testing.TB, dest string, ports map[string]int) []server.InboundRequest {
	port := func(tag string) int {
		if p, ok := ports[tag]; ok {
			return p
		}
		return xraytest.FreePort(t)
	}
	return []server.InboundRequest{
		{Tag: "vless", Protocol: user.VLESSReality, Port: port("vless"), Listen: "127.0.0.1", Dest: dest, ServerNames: []string{sni}},
		{Tag: "ss", Protocol: user.Shadowsocks2022, Port: port("ss"), Listen: "127.0.0.1", Method: user.SS2022AES128GCM},
		{Tag: "socks", Protocol: user.SOCKS5, Port: port("socks"), Listen: "127.0.0.1"},
		{Tag: "http", Protocol: user.HTTP, Port: port("http"), Listen: "127.0.0.1"},
	}
}

// createServer creates a server on the fleet's node through the servers
// registry, which generates its keys.
func (f *fleet) createServer(name, dest string) server.Server {
	f.t.Helper()
	s, err := bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersCreate),
		server.CreateRequest{Node: f.node, Name: name, Inbounds: inboundRequests(f.t, dest, nil)})
	if err != nil {
		f.t.Fatalf("creating server %s: %v", name, err)
	}
	return s
}

// updateServer replaces a server's inbounds through the registry (keys of
// inbounds with the same tag and protocol are kept).
func (f *fleet) updateServer(id string, ins []server.InboundRequest) (server.Server, error) {
	return bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersUpdate),
		server.UpdateRequest{ID: id, Inbounds: &ins})
}

// putServer writes a desired server into the servers bucket, as the
// servers registry does, and returns its revision.
func (f *fleet) putServer(s server.Server) uint64 {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketServers)
	if err != nil {
		f.t.Fatal(err)
	}
	for range 10 {
		s.Revision = 0
		data, err := json.Marshal(s)
		if err != nil {
			f.t.Fatal(err)
		}
		e, err := kv.Get(f.ctx(), s.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			rev, err := kv.Create(f.ctx(), s.ID, data)
			if err != nil {
				f.t.Fatal(err)
			}
			return rev
		}
		if err != nil {
			f.t.Fatal(err)
		}
		// Keep the status the agent wrote, as the registry does.
		var cur server.Server
		if err := json.Unmarshal(e.Value(), &cur); err != nil {
			f.t.Fatal(err)
		}
		s.Status = cur.Status
		s.Status.State = server.StatePending
		if data, err = json.Marshal(s); err != nil {
			f.t.Fatal(err)
		}
		rev, err := kv.Update(f.ctx(), s.ID, data, e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		return rev
	}
	f.t.Fatal("server keeps changing")
	return 0
}

func (f *fleet) deleteServer(id string) {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketServers)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := kv.Delete(f.ctx(), id); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) getServer(id string) (server.Server, error) {
	// Through the servers service, as the gateway reads it: the desired
	// record with its node's report from the server_status bucket.
	return bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersGet), server.GetRequest{ID: id})
}

// waitStatus waits until the server's status has state for the spec at
// revision rev (0: any), and returns the server.
func (f *fleet) waitStatus(id string, rev uint64, state server.State) server.Server {
	f.t.Helper()
	var s server.Server
	waitfor.Cond(f.t, applyWait, func() error {
		var err error
		if s, err = f.getServer(id); err != nil {
			return err
		}
		st := s.Status
		switch {
		case st.State != state:
			return fmt.Errorf("status %+v, want %s", st, state)
		case state == server.StateApplied && rev != 0 && st.AppliedRevision != rev:
			return fmt.Errorf("applied revision %d, want %d", st.AppliedRevision, rev)
		}
		return nil
	})
	return s
}

// createUser creates a user through the registry, as the gateway does.
func (f *fleet) createUser(name string) user.User {
	f.t.Helper()
	u, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: name})
	if err != nil {
		f.t.Fatalf("creating user %s: %v", name, err)
	}
	return u
}

// userCmd calls a users endpoint that takes a RevisionRequest.
func (f *fleet) userCmd(endpoint, id string) {
	f.t.Helper()
	if _, err := bus.Request[json.RawMessage](f.ctx(), f.nc, subject.UsersCmd(endpoint), user.RevisionRequest{ID: id}); err != nil {
		f.t.Fatalf("%s %s: %v", endpoint, id, err)
	}
}

// links returns the user's links on server srv by protocol.
func (f *fleet) links(userID, srv string) map[user.Protocol]string {
	f.t.Helper()
	resp, err := bus.Request[user.LinksResponse](f.ctx(), f.nc, subject.UsersCmd(subject.UsersLinks), user.LinksRequest{ID: userID})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[user.Protocol]string{}
	for _, l := range resp.Links {
		if l.Server == srv {
			out[l.Protocol] = l.URL
		}
	}
	return out
}

// outbound parses a client link into the client side of it.
func outbound(t testing.TB, link string) xraytest.Outbound {
	t.Helper()
	ob, err := linktest.Outbound(link)
	if err != nil {
		t.Fatal(err)
	}
	return ob
}

// fetchOnce fetches the target through c over a new tunnel connection.
func fetchOnce(c *xraytest.Client, target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := c.Get(ctx, target)
	if err != nil {
		return err
	}
	if string(body) != xraytest.TargetBody {
		return fmt.Errorf("body %q", body)
	}
	return nil
}

// connects waits until c gets through; refused waits until it no longer
// does.
func connects(t testing.TB, c *xraytest.Client, target, what string) {
	t.Helper()
	waitfor.Cond(t, convergeFor, func() error {
		if err := fetchOnce(c, target); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

func refused(t testing.TB, c *xraytest.Client, target, what string) {
	t.Helper()
	waitfor.Cond(t, convergeFor, func() error {
		if err := fetchOnce(c, target); err == nil {
			return fmt.Errorf("%s still connects", what)
		}
		return nil
	})
}

// running returns the fleet agent's running Xray of server id.
func (f *fleet) running(id string) (reconcile.RunningServer, error) {
	a := f.currentAgent()
	if a == nil {
		return reconcile.RunningServer{}, errors.New("no agent")
	}
	for _, rs := range a.Reconciler().Servers() {
		if rs.ServerID == id {
			return rs, nil
		}
	}
	return reconcile.RunningServer{}, fmt.Errorf("server %s not running", id)
}

// inboundUsers lists the users Xray holds on each inbound of s.
func (f *fleet) inboundUsers(s server.Server) (map[string][]string, error) {
	rs, err := f.running(s.ID)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, in := range s.Inbounds {
		xin := xray.Inbound{Tag: in.Tag, Protocol: xray.Protocol(in.Protocol)}
		ids, err := rs.Client.InboundUsers(f.ctx(), xin)
		if err != nil {
			return nil, err
		}
		out[in.Tag] = ids
	}
	return out, nil
}

func newID(t testing.TB) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// dockerOrSkip skips when the Docker engine is unreachable, unless
// REQUIRE_DOCKER=1 makes that a failure.
func dockerOrSkip(t testing.TB) {
	t.Helper()
	if socketUp("/var/run/docker.sock") {
		return
	}
	if os.Getenv("REQUIRE_DOCKER") == "1" {
		t.Fatal("REQUIRE_DOCKER=1 but the docker engine is unreachable at /var/run/docker.sock")
	}
	t.Skip("skipping: docker engine unreachable; set REQUIRE_DOCKER=1 to fail instead")
}

// listen holds a TCP port on loopback for the test, as another program on
// the host would.
func listen(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// waitEvent waits for an event of type typ about server id and returns it.
func (f *fleet) waitEvent(id string, typ event.Type) event.Envelope {
	f.t.Helper()
	var got event.Envelope
	waitfor.Cond(f.t, convergeFor, func() error {
		for _, e := range natstest.Events(f.t, f.js, subject.ServerStatusEvent(f.node, id)) {
			if e.Type == typ {
				got = e
				return nil
			}
		}
		return fmt.Errorf("no %s event for server %s", typ, id)
	})
	return got
}

// waitEventAt waits for an event of type typ about revision rev of server
// id (its message id starts with "<id>:<rev>:").
func (f *fleet) waitEventAt(id string, typ event.Type, rev uint64) event.Envelope {
	f.t.Helper()
	var got event.Envelope
	prefix := fmt.Sprintf("%s:%d:", id, rev)
	waitfor.Cond(f.t, convergeFor, func() error {
		for _, e := range f.serverEvents(id) {
			if e.Type == typ && strings.HasPrefix(e.ID, prefix) {
				got = e
				return nil
			}
		}
		return fmt.Errorf("no %s event for revision %d of server %s", typ, rev, id)
	})
	return got
}

func (f *fleet) serverEvents(id string) []event.Envelope {
	return natstest.Events(f.t, f.js, subject.ServerStatusEvent(f.node, id))
}

func (f *fleet) deleteServerReq(id string) (server.DeleteResponse, error) {
	return bus.Request[server.DeleteResponse](f.ctx(), f.nc, subject.ServersCmd(subject.ServersDelete), server.DeleteRequest{ID: id})
}

func (f *fleet) renameServer(id, name string) (server.Server, error) {
	return bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersUpdate), server.UpdateRequest{ID: id, Name: &name})
}

// cloneServer deep-copies s.
func cloneServer(t testing.TB, s server.Server) server.Server {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out server.Server
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
