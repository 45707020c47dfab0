package gateway_test

import (
	"bufio"
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// percentiles reports p50 and p99 of ds in milliseconds.
func percentiles(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	at := func(q float64) float64 {
		return float64(ds[min(len(ds)-1, int(q*float64(len(ds))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkGetUserLoopback is a load generator: 32 clients on loopback
// keep GET /api/v1/users/{name} busy against the real users service; it
// reports p50/p99 latency and requests per second at saturation.
//
//	go test -run '^$' -bench GetUserLoopback -benchtime 20000x ./services/gateway
func BenchmarkGetUserLoopback(b *testing.B) {
	h := newHarness(b)
	h.createUser("bench")
	const workers = 32
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	url := h.url + "/api/v1/users/bench"
	tok := "Bearer " + h.tokens["viewer"]
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var failed atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("Authorization", tok)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = bufio.NewReader(resp.Body).WriteTo(discard{})
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d requests failed", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	percentiles(b, lat)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkSSEEventLatency measures the time from publishing an event on
// EVENTS to a client of GET /api/v1/events reading it.
//
//	go test -run '^$' -bench SSEEventLatency -benchtime 2000x ./services/gateway
func BenchmarkSSEEventLatency(b *testing.B) {
	h := newHarnessWith(b, options{noUsers: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/api/v1/events?kind=user", nil)
	req.Header.Set("Authorization", "Bearer "+h.tokens["viewer"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	got := make(chan time.Time, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				got <- time.Now()
			}
		}
	}()
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		env, _ := event.New(event.UserUpdated, "bench:"+strconv.Itoa(i), "bench", map[string]int{"i": i})
		t0 := time.Now()
		if _, err := bus.PublishEvent(ctx, h.js, subject.UserEvent("bench"), env); err != nil {
			b.Fatal(err)
		}
		select {
		case t1 := <-got:
			lat[i] = t1.Sub(t0)
		case <-time.After(10 * time.Second):
			b.Fatalf("event %d not streamed within 10s", i)
		}
	}
	b.StopTimer()
	percentiles(b, lat)
	cancel()
	<-done
}
