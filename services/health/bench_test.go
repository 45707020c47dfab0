package health_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/health/internal/notify"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// cpuSeconds is the user+system CPU time of process pid.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ")".
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// BenchmarkIngest100Agents runs vpn-health as its own process against a
// NATS server fed by 100 simulated agents (heartbeat, host stats and three
// workloads' stats every 5s) and reports the process's CPU use and RSS
// over a 60s window, after a 10s warm-up.
func BenchmarkIngest100Agents(b *testing.B) {
	const agents, workloads, interval = 100, 3, 5 * time.Second
	window := 60 * time.Second
	if testing.Short() {
		window = 15 * time.Second
	}
	ns := natstest.Start(b)
	bin := filepath.Join(b.TempDir(), "vpn-health")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/vpn-health").CombinedOutput(); err != nil {
		b.Fatalf("building vpn-health: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := ns.JetStream()
	fakes := make([]*fakeAgent, agents)
	for i := range fakes {
		fakes[i] = newFakeAgent(ctx, b, js, fmt.Sprintf("sim%03d", i))
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// Each agent on its own phase within the interval, as a real fleet.
	for i, f := range fakes {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * interval / agents):
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				now := time.Now()
				_ = f.beat(ctx, now)
				_ = f.stats(ctx, now, 20, workloads)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	for b.Loop() {
		cmd := exec.Command(bin, "--nats-url", ns.URL(), "--nats-creds", ns.ServiceCredsFile(), "--ops-addr", "", "--log-level", "warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Second) // warm-up: the backlog, then steady state
		c0, _ := cpuSeconds(cmd.Process.Pid)
		t0 := time.Now()
		var rss []uint64
		for time.Since(t0) < window {
			time.Sleep(time.Second)
			if r, err := procstat.RSSBytes(cmd.Process.Pid); err == nil {
				rss = append(rss, r)
			}
		}
		c1, _ := cpuSeconds(cmd.Process.Pid)
		wall := time.Since(t0).Seconds()
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		slices.Sort(rss)
		b.ReportMetric(100*(c1-c0)/wall, "%cpu")
		b.ReportMetric(float64(rss[len(rss)/2])/1e6, "MB-rss-p50")
		b.ReportMetric(float64(rss[len(rss)-1])/1e6, "MB-rss-max")
		b.ReportMetric(float64(agents*(2+workloads))/interval.Seconds(), "msgs/s")
	}
}

// BenchmarkAlertLatency measures condition true → webhook received: a node
// reports a heartbeat older than the grace (down at once; NodeDown has
// for 0), the evaluator fires, the notifier posts. With the test's 50ms
// evaluation interval; in production the interval (5s) dominates.
func BenchmarkAlertLatency(b *testing.B) {
	ns := natstest.Start(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body notify.WebhookBody
		_ = jsonDecode(r, &body)
		mu.Lock()
		if body.Alert.Status == "firing" {
			arrived[body.Alert.Labels["node"]] = time.Now()
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	rules := filepath.Join(b.TempDir(), "rules.toml")
	_ = os.WriteFile(rules, fmt.Appendf(nil, `
[[rule]]
name = "NodeDown"
metric = "node_down"
op = ">"
severity = "critical"
[[notifier]]
name = "bench"
kind = "webhook"
url = %q
`, srv.URL), 0o600)
	startHealth(b, ns, testConfig(rules))
	js := ns.JetStream()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("lat%05d", i)
		f := newFakeAgent(ctx, b, js, id)
		start := time.Now()
		if err := f.beat(ctx, start.Add(-time.Hour)); err != nil {
			b.Fatal(err)
		}
		waitfor.Cond(b, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if at, ok := arrived[id]; ok {
				lat = append(lat, at.Sub(start))
				return nil
			}
			return errNotYet
		})
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

func jsonDecode(r *http.Request, v any) error {
	return json.NewDecoder(bufio.NewReader(r.Body)).Decode(v)
}
