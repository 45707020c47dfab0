package users_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// BenchmarkImport10k imports 10,000 users from CSV, end to end: from the
// create request until the job record says every user is stored in the
// registry (durable JetStream, sync before every acknowledgement), with
// one and with two vpn-users processes sharing the work. It reports
// seconds, users per second and the peak RSS of each vpn-users process.
func BenchmarkImport10k(b *testing.B) {
	const n = 10_000
	bin := userstest.Build(b)
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			var total time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				srv := natstest.Start(b)
				nc := srv.Conn()
				js, _ := jetstream.New(nc)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				kv, err := js.KeyValue(ctx, subject.BucketJobs)
				if err != nil {
					b.Fatal(err)
				}
				var procs []*userstest.Process
				for range replicas {
					procs = append(procs, userstest.Start(b, bin, srv))
				}
				data := csvUsers(fmt.Sprintf("b%d", i), n)
				sample := func() {
					for _, p := range procs {
						if rss, err := procstat.RSSBytes(p.PID()); err == nil && rss > peak {
							peak = rss
						}
					}
				}
				b.StartTimer()
				tick := time.NewTicker(5 * time.Millisecond)
				start := time.Now()
				resp, err := bus.Request[job.CreateResponse](ctx, nc, subject.JobsCmd(subject.JobsCreate), job.CreateRequest{Kind: job.KindImport, Data: data})
				if err != nil {
					b.Fatal(err)
				}
				for {
					rec, err := jobRecord(ctx, kv, resp.Job.ID)
					if err != nil {
						b.Fatal(err)
					}
					sample()
					if rec.State.Final() {
						if rec.Done != n {
							b.Fatalf("job %+v", rec)
						}
						break
					}
					<-tick.C
				}
				tick.Stop()
				total += time.Since(start)
				b.StopTimer()
				for _, p := range procs {
					p.Stop()
				}
				cancel()
				srv.Shutdown()
			}
			secs := total.Seconds() / float64(b.N)
			b.ReportMetric(secs, "s/import")
			b.ReportMetric(n/secs, "users/s")
			b.ReportMetric(float64(peak)/(1<<20), "MB-peak-rss")
		})
	}
}
