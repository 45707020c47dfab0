package users_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// minSamples is the least number of requests a latency benchmark times,
// so p50/p99 mean something even under -benchtime 1x.
const minSamples = 1000

// benchEnv is a durable JetStream server over TCP with n users already
// stored, and the users core running on it.
type benchEnv struct {
	nc      *nats.Conn
	stop    func()
	prefill time.Duration
	started time.Duration
}

// report adds the set-up metrics (after ResetTimer, which clears them).
func (e *benchEnv) report(b *testing.B) {
	b.ReportMetric(e.prefill.Seconds(), "s-prefill")
	b.ReportMetric(float64(e.started.Milliseconds()), "ms-start")
}

// startBench prefills n users, then restarts the server with durable sync
// (fsync before every acknowledgement, the default) and starts the core.
// Prefill writes the buckets directly with async publishes under a relaxed
// sync interval: the slow path is what is measured, not what is set up.
func startBench(b *testing.B, n int) *benchEnv {
	b.Helper()
	dir := b.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	trust, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		b.Fatal(err)
	}
	fast, err := natsserver.Start(natsserver.Config{DataDir: dir, SyncInterval: time.Minute, Trust: trust}, log)
	if err != nil {
		b.Fatal(err)
	}
	nc, err := fast.Connect()
	if err != nil {
		b.Fatal(err)
	}
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err := bus.Provision(ctx, js, 1); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	now := time.Now()
	for i := range n {
		id := uuid.NewString()
		u, err := registry.NewUser(user.CreateRequest{Name: fmt.Sprintf("prefill-%07d", i)}, id, now.Add(time.Duration(i)))
		if err != nil {
			b.Fatal(err)
		}
		data, err := json.Marshal(u)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync("$KV."+subject.BucketUsers+"."+id, data); err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync("$KV."+subject.BucketUserNames+"."+registry.NameKey(u.Name), []byte(id)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("prefill did not complete")
	}
	nc.Close()
	fast.Shutdown()
	prefill := time.Since(start)

	srv, err := natsserver.Start(natsserver.Config{DataDir: dir, Listen: "127.0.0.1:0", Trust: trust}, log)
	if err != nil {
		b.Fatal(err)
	}
	cred, err := trust.ServiceCredential("bench")
	if err != nil {
		b.Fatal(err)
	}
	svcConn, err := nats.Connect(srv.ClientURL(), cred.Option())
	if err != nil {
		b.Fatal(err)
	}
	svcJS, _ := jetstream.New(svcConn)
	env := svc.Env{NC: svcConn, JS: svcJS, Log: log, Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	loadStart := time.Now()
	go func() { done <- users.Run(runCtx, users.Defaults(), env) }()
	client, err := nats.Connect(srv.ClientURL(), cred.Option())
	if err != nil {
		b.Fatal(err)
	}
	waitfor.Cond(b, 5*time.Minute, func() error {
		c, err := bus.Request[user.CountResponse](ctx, client, subject.UsersCmd(subject.UsersCount), user.Filter{})
		if err == nil && c.Count != n {
			err = fmt.Errorf("%d of %d users loaded", c.Count, n)
		}
		return err
	})
	e := &benchEnv{nc: client, prefill: prefill, started: time.Since(loadStart)}
	e.stop = func() {
		stopRun()
		if err := <-done; err != nil {
			b.Errorf("users.Run: %v", err)
		}
		client.Close()
		svcConn.Close()
		srv.Shutdown()
	}
	b.Cleanup(e.stop)
	return e
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// BenchmarkCreateLatency times creates over the NATS request path, one at
// a time, with 1,000 and 100,000 users already stored.
func BenchmarkCreateLatency(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprintf("existing=%d", n), func(b *testing.B) {
			e := startBench(b, n)
			ctx := context.Background()
			samples := max(b.N, minSamples)
			lat := make([]time.Duration, 0, samples)
			b.ResetTimer()
			start := time.Now()
			for i := range samples {
				t0 := time.Now()
				if _, err := bus.Request[user.User](ctx, e.nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: fmt.Sprintf("bench-%07d", i)}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			total := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(total.Nanoseconds())/float64(samples), "ns/op")
			b.ReportMetric(float64(percentile(lat, 0.50).Microseconds())/1000, "ms-p50")
			b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, "ms-p99")
			e.report(b)
		})
	}
}

// BenchmarkCreateThroughput runs 8 clients creating users at once.
func BenchmarkCreateThroughput(b *testing.B) {
	const clients = 8
	e := startBench(b, 0)
	total := max(b.N, 2*minSamples)
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= total {
					return
				}
				if _, err := bus.Request[user.User](context.Background(), e.nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: fmt.Sprintf("tp-%07d", k)}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(total), "ns/op")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "creates/s")
	e.report(b)
}

// BenchmarkList100k pages through 100,000 users, 1,000 per page.
func BenchmarkList100k(b *testing.B) {
	const n = 100_000
	e := startBench(b, n)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		req := user.ListRequest{Limit: 1000}
		seen := 0
		for {
			page, err := bus.Request[user.ListResponse](context.Background(), e.nc, subject.UsersCmd(subject.UsersList), req)
			if err != nil {
				b.Fatal(err)
			}
			seen += len(page.Users)
			if page.NextCursor == "" {
				break
			}
			req.Cursor = page.NextCursor
		}
		total += time.Since(start)
		if seen != n {
			b.Fatalf("listed %d users, want %d", seen, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-all-pages")
	b.ReportMetric(rssMB(b), "MB-rss")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "MB-heap")
	e.report(b)
}

// rssMB is this process's resident memory (the embedded NATS server, the
// users core and the client together).
func rssMB(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
