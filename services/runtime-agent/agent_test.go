package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type harness struct {
	t      testing.TB
	ns     *natstest.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	agent  *agent.Agent
	stop   func()
	nodeID string
}

func start(t testing.TB) *harness {
	t.Helper()
	ns := natstest.Start(t)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.NodeID = runtimetest.NewNode("agent")
	// The agent holds its node's credential, as on a real host.
	anc := ns.NodeConn(t, cfg.NodeID)
	ajs, err := jetstream.New(anc)
	if err != nil {
		t.Fatal(err)
	}
	env := svc.Env{NC: anc, JS: ajs, Log: natstest.Logger(t), Metrics: telemetry.NewRegistry(), Probe: probe.New(), DataDir: t.TempDir()}
	cfg.Runtime = "process"
	cfg.Heartbeat = 100 * time.Millisecond
	cfg.StatsInterval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	a, err := agent.New(ctx, cfg, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent run: %v", err)
			}
			a.Runtime().Close()
		})
	}
	t.Cleanup(stop)
	return &harness{t: t, ns: ns, nc: nc, js: js, agent: a, stop: stop, nodeID: cfg.NodeID}
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) nodeEntry() (node.Node, error) {
	kv, err := h.js.KeyValue(h.ctx(), subject.BucketNodes)
	if err != nil {
		return node.Node{}, err
	}
	e, err := kv.Get(h.ctx(), h.nodeID)
	if err != nil {
		return node.Node{}, err
	}
	var n node.Node
	return n, json.Unmarshal(e.Value(), &n)
}

// runWorkload starts the contract suite's test workload under the agent's
// runtime.
func (h *harness) runWorkload(name string, env map[string]string) runtime.Workload {
	h.t.Helper()
	rt := h.agent.Runtime()
	id, err := rt.Create(h.ctx(), runtime.Spec{Name: name, Image: runtimetest.Workload(h.t), Env: env})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = rt.Remove(context.Background(), id) })
	if err := rt.Start(h.ctx(), id); err != nil {
		h.t.Fatal(err)
	}
	w, err := rt.Inspect(h.ctx(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

// eventsOn returns the runtime events stored for one workload.
func (h *harness) eventsOn(workload string) []event.Envelope {
	h.t.Helper()
	return natstest.Events(h.t, h.js, subject.RuntimeEvent(h.nodeID, workload))
}

func hasType(evs []event.Envelope, typ event.Type) bool {
	return slices.ContainsFunc(evs, func(e event.Envelope) bool { return e.Type == typ })
}

func TestAgentOnTheBus(t *testing.T) {
	h := start(t)
	ctx := h.ctx()

	// The node registers and heartbeats.
	var first node.Node
	waitfor.Cond(t, 10*time.Second, func() error {
		var err error
		first, err = h.nodeEntry()
		return err
	})
	if first.Runtime != "process" || first.State != node.StateRunning || first.PublicAddr == "" || first.Hostname == "" {
		t.Fatalf("registration %+v", first)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		n, err := h.nodeEntry()
		if err != nil || !n.HeartbeatAt.After(first.HeartbeatAt) {
			return fmt.Errorf("heartbeat not advancing: %v", err)
		}
		return nil
	})

	w := h.runWorkload(h.nodeID+"-web", map[string]string{"WORKLOAD_LINES": "3"})

	t.Run("status and workloads answer", func(t *testing.T) {
		st, err := bus.Request[node.StatusReply](ctx, h.nc, subject.AgentCmd(h.nodeID, node.CmdStatus), struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Node.ID != h.nodeID || len(st.Workloads) != 1 || st.Workloads[0].Name != w.Name {
			t.Fatalf("status %+v", st)
		}
	})

	t.Run("logs tail", func(t *testing.T) {
		waitfor.Cond(t, 10*time.Second, func() error {
			lr, err := bus.Request[node.LogsReply](ctx, h.nc, subject.AgentCmd(h.nodeID, node.CmdLogs), node.LogsRequest{Workload: w.Name})
			if err != nil {
				return err
			}
			for _, l := range lr.Lines {
				if l.Text == "ready" {
					return nil
				}
			}
			return fmt.Errorf("no ready line in %d lines", len(lr.Lines))
		})
	})

	t.Run("logs follow streams until the follower leaves", func(t *testing.T) {
		// Under the node's own prefix: its credential may publish there only.
		inbox := subject.LogDelivery(h.nodeID, nats.NewInbox()[len("_INBOX."):])
		lines := make(chan string, 1000)
		sub, err := h.nc.Subscribe(inbox, func(m *nats.Msg) {
			var c node.LogChunk
			_ = json.Unmarshal(m.Data, &c)
			for _, l := range c.Lines {
				select {
				case lines <- l.Text:
				default:
				}
			}
			_ = m.Respond(nil)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.Request[node.LogsReply](ctx, h.nc, subject.AgentCmd(h.nodeID, node.CmdLogs),
			node.LogsRequest{Workload: w.Name, Follow: true, Deliver: inbox}); err != nil {
			t.Fatal(err)
		}
		ticks := 0
		waitfor.Cond(t, 10*time.Second, func() error {
			for {
				select {
				case l := <-lines:
					if strings.HasPrefix(l, "tick") {
						ticks++
					}
					continue
				default:
				}
				if ticks >= 2 {
					return nil
				}
				return fmt.Errorf("%d tick lines followed", ticks)
			}
		})
		_ = sub.Unsubscribe() // the agent notices at its next chunk and stops
	})

	t.Run("commands on foreign workloads are NotFound", func(t *testing.T) {
		for _, cmd := range []string{node.CmdRestart, node.CmdLogs} {
			_, err := bus.Request[json.RawMessage](ctx, h.nc, subject.AgentCmd(h.nodeID, cmd), node.WorkloadRequest{Workload: "not-ours"})
			if !errors.Is(err, errs.NotFound) {
				t.Errorf("%s: err %v, want NotFound", cmd, err)
			}
		}
		_, err := bus.Request[json.RawMessage](ctx, h.nc, subject.AgentCmd(h.nodeID, node.CmdLogs), node.LogsRequest{Tail: -1})
		if !errors.Is(err, errs.Invalid) {
			t.Errorf("bad logs request: err %v, want Invalid", err)
		}
	})

	t.Run("events and stats land in their streams", func(t *testing.T) {
		waitfor.Cond(t, 10*time.Second, func() error {
			if !hasType(h.eventsOn(w.Name), event.RuntimeStarted) {
				return errors.New("no start event yet")
			}
			return nil
		})
		st, err := h.js.Stream(ctx, subject.StreamStats)
		if err != nil {
			t.Fatal(err)
		}
		waitfor.Cond(t, 10*time.Second, func() error {
			if _, err := st.GetLastMsgForSubject(ctx, subject.HostStats(h.nodeID)); err != nil {
				return fmt.Errorf("host stats: %w", err)
			}
			m, err := st.GetLastMsgForSubject(ctx, subject.WorkloadStats(h.nodeID, w.Name))
			if err != nil {
				return fmt.Errorf("workload stats: %w", err)
			}
			var ws node.WorkloadStats
			if err := json.Unmarshal(m.Data, &ws); err != nil {
				return err
			}
			if ws.MemoryBytes == 0 {
				return errors.New("workload stats without memory")
			}
			return nil
		})
	})

	t.Run("nothing published while NATS is down is lost", func(t *testing.T) {
		h.ns.Shutdown()
		if err := h.agent.Runtime().Stop(ctx, w.ID, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		waitfor.Cond(t, 10*time.Second, func() error {
			if h.agent.Buffered() == 0 {
				return errors.New("nothing buffered while NATS is down")
			}
			return nil
		})
		h.ns.Restart()
		waitfor.Cond(t, 30*time.Second, func() error {
			if !hasType(h.eventsOn(w.Name), event.RuntimeDied) {
				return errors.New("die event not delivered after NATS came back")
			}
			return nil
		})
		waitfor.Cond(t, 30*time.Second, func() error {
			if n := h.agent.Buffered(); n != 0 {
				return fmt.Errorf("%d still buffered", n)
			}
			return nil
		})
	})

	t.Run("heartbeats stop when the agent stops", func(t *testing.T) {
		h.stop()
		n, err := h.nodeEntry()
		if err != nil {
			t.Fatal(err)
		}
		if n.State != node.StateStopped {
			t.Fatalf("state %q after stop, want stopped", n.State)
		}
		// Long enough for several beats at 100ms; the entry must not move.
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			later, err := h.nodeEntry()
			if err != nil {
				t.Fatal(err)
			}
			if !later.HeartbeatAt.Equal(n.HeartbeatAt) {
				t.Fatalf("heartbeat moved after stop: %v -> %v", n.HeartbeatAt, later.HeartbeatAt)
			}
		}
	})
}

// TestRuntimeSelection opens each runtime by name; auto picks the first
// reachable one and says which.
func TestRuntimeSelection(t *testing.T) {
	ctx := context.Background()
	log := natstest.Logger(t)
	dockerUp := os.Getenv("REQUIRE_DOCKER") == "1" || socketUp("/var/run/docker.sock")
	tests := []struct {
		runtime  string
		want     runtime.Kind
		needs    bool // needs the Docker engine (and its containerd)
		docker   string
		wantErr  errs.Class
		checkErr bool
	}{
		{runtime: "process", want: runtime.KindProcess},
		{runtime: "docker", want: runtime.KindDocker, needs: true},
		{runtime: "auto", want: runtime.KindDocker, needs: true},
		{runtime: "docker", docker: "unix:///nonexistent.sock", wantErr: errs.Unavailable, checkErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.runtime+tt.docker, func(t *testing.T) {
			if tt.needs && !dockerUp {
				t.Skip("docker engine not reachable here (CI sets REQUIRE_DOCKER=1 where it is)")
			}
			cfg := agent.DefaultConfig()
			cfg.Runtime = tt.runtime
			cfg.DockerHost = tt.docker
			rt, err := agent.OpenRuntime(ctx, cfg, runtimetest.NewNode("sel"), t.TempDir(), log)
			if tt.checkErr {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rt.Close()
			if rt.Kind() != tt.want {
				t.Fatalf("kind %s, want %s", rt.Kind(), tt.want)
			}
		})
	}
	cfg := agent.DefaultConfig()
	cfg.Runtime = "podman"
	if err := cfg.Validate(); !errors.Is(err, errs.Invalid) {
		t.Fatalf("unknown runtime: err %v, want Invalid", err)
	}
}

func socketUp(path string) bool {
	c, err := net.Dial("unix", path)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
