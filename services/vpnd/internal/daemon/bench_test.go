package daemon_test

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkColdStartToReady starts the real vpnd binary on a fresh data dir
// and measures the time until GET /readyz answers 200 (streams and buckets
// provisioned), then its resident memory after a second of idling.
func BenchmarkColdStartToReady(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "vpnd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/vpnd/cmd/vpnd").CombinedOutput(); err != nil {
		b.Fatalf("building vpnd: %v\n%s", err, out)
	}
	var totalReady time.Duration
	var totalRSS float64
	b.ResetTimer()
	for range b.N {
		port := freePort(b)
		cmd := exec.Command(bin, "--data-dir", b.TempDir(), "--http-addr", "127.0.0.1:"+port, "--ops-addr", "", "--nats-listen", "")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitfor.Cond(b, 10*time.Second, func() error {
			resp, err := http.Get("http://127.0.0.1:" + port + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("readyz answered %d", resp.StatusCode)
			}
			return nil
		})
		totalReady += time.Since(start)
		b.StopTimer()
		time.Sleep(time.Second) // the idle period is what is measured
		totalRSS += rssMB(b, cmd.Process.Pid)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		b.StartTimer()
	}
	b.ReportMetric(float64(totalReady.Milliseconds())/float64(b.N), "ms-to-ready")
	b.ReportMetric(totalRSS/float64(b.N), "MB-idle-rss")
}

func rssMB(b *testing.B, pid int) float64 {
	rss, err := procstat.RSSBytes(pid)
	if err != nil {
		b.Fatal(err)
	}
	return float64(rss) / (1 << 20)
}
