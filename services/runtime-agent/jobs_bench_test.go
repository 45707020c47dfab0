package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// BenchmarkImport10kOnXray imports 10,000 users from CSV, end to end until
// the node's Xray holds every one of them on every inbound of a server
// with four (VLESS+REALITY, SS2022, SOCKS5, HTTP): the create request,
// validation, the JOBS batches applied by one or two vpn-users processes,
// the agent's watch of the users bucket and its live adds through the
// Xray API. The agent runs in the benchmark's process (process runtime,
// the pinned Xray), polled every 20 ms. It reports seconds, users per
// second, and the peak RSS of each vpn-users process during the import.
func BenchmarkImport10kOnXray(b *testing.B) {
	const n = 10_000
	bin := userstest.Build(b)
	for _, replicas := range []int{1, 2} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			var total time.Duration
			var peak uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				f := newFleetOnProcesses(b)
				var procs []*userstest.Process
				for range replicas {
					procs = append(procs, userstest.Start(b, bin, f.ns))
				}
				f.startAgent()
				srv := f.createServer("bench", xraytest.StartTLSDest(b, sni))
				f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
				rs, err := f.running(srv.ID)
				if err != nil {
					b.Fatal(err)
				}
				data := importCSV(fmt.Sprintf("b%d", i), n)
				// An SS2022 inbound is swapped while users are added in bulk,
				// so a read may miss it for a moment: that is "not yet".
				holds := func() (bool, error) {
					for _, in := range srv.Inbounds {
						ids, err := rs.Client.InboundUsers(f.ctx(), xray.Inbound{Tag: in.Tag, Protocol: xray.Protocol(in.Protocol)})
						if err != nil || len(ids) != n {
							return false, err
						}
					}
					return true, nil
				}
				tick := time.NewTicker(20 * time.Millisecond)
				b.StartTimer()
				start := time.Now()
				resp, err := bus.Request[job.CreateResponse](f.ctx(), f.nc, subject.JobsCmd(subject.JobsCreate), job.CreateRequest{Kind: job.KindImport, Data: data})
				if err != nil {
					b.Fatal(err)
				}
				for deadline := start.Add(5 * time.Minute); ; {
					for _, p := range procs {
						if rss, err := procstat.RSSBytes(p.PID()); err == nil && rss > peak {
							peak = rss
						}
					}
					ok, err := holds()
					if ok {
						break
					}
					if time.Now().After(deadline) {
						b.Fatalf("xray did not hold %d users within 5 minutes (last read: %v)", n, err)
					}
					<-tick.C
				}
				total += time.Since(start)
				b.StopTimer()
				tick.Stop()
				if rec := f.waitJobFinal(resp.Job.ID); rec.Done != n {
					b.Fatalf("job %+v", rec)
				}
				f.waitXrayHolds(srv, f.registryIDs(), "imported users")
				for _, p := range procs {
					p.Stop()
				}
			}
			secs := total.Seconds() / float64(b.N)
			b.ReportMetric(secs, "s/import")
			b.ReportMetric(n/secs, "users/s")
			b.ReportMetric(float64(peak)/(1<<20), "MB-peak-rss")
		})
	}
}
