package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkEventLatency measures how long a runtime event takes from the
// moment the runtime observed it (the event's own time) to its arrival at a
// NATS subscriber, through the agent's outbox and JetStream. Each
// iteration starts a workload and waits for its start event.
func BenchmarkEventLatency(b *testing.B) {
	h := start(b)
	sub, err := h.nc.SubscribeSync(subject.EventsOfKind(subject.KindRuntime))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	bin := runtimetest.Workload(b)
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("%s-ev%d", h.nodeID, i)
		id, err := h.agent.Runtime().Create(context.Background(), runtime.Spec{Name: name, Image: bin})
		if err != nil {
			b.Fatal(err)
		}
		if err := h.agent.Runtime().Start(context.Background(), id); err != nil {
			b.Fatal(err)
		}
		for {
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				b.Fatal(err)
			}
			got := time.Now()
			var env event.Envelope
			var ev node.RuntimeEvent
			if json.Unmarshal(m.Data, &env) != nil || env.Decode(&ev) != nil {
				continue
			}
			if ev.Name == name && env.Type == event.RuntimeStarted {
				lat = append(lat, got.Sub(ev.Time))
				break
			}
		}
		b.StopTimer()
		_ = h.agent.Runtime().Remove(context.Background(), id)
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

// BenchmarkAgentIdleRSS runs the real vpn-agent binary (process runtime)
// against a NATS server, waits for its node registration, lets it idle for
// two heartbeats and reads its resident memory.
func BenchmarkAgentIdleRSS(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "vpn-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/runtime-agent/cmd/vpn-agent").CombinedOutput(); err != nil {
		b.Fatalf("building vpn-agent: %v\n%s", err, out)
	}
	ns := natstest.Start(b)
	js, err := jetstream.New(ns.Conn())
	if err != nil {
		b.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), subject.BucketNodes)
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for i := range b.N {
		id := fmt.Sprintf("rss%d-%d", i, time.Now().UnixNano())
		cmd := exec.Command(bin, "--nats-url", ns.URL(), "--nats-creds", natstest.CredsFile(b, ns.NodeCredential(b, id)), "--data-dir", b.TempDir(), "--node-id", id,
			"--runtime", "process", "--heartbeat", "1s", "--ops-addr", "")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitfor.Cond(b, 20*time.Second, func() error {
			_, err := kv.Get(context.Background(), id)
			return err
		})
		time.Sleep(2 * time.Second) // idling is what is measured
		total += rssMB(b, cmd.Process.Pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	b.ReportMetric(total/float64(b.N), "MB-idle-rss")
}

func rssMB(b *testing.B, pid int) float64 {
	rss, err := procstat.RSSBytes(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(rss) / (1 << 20)
}
