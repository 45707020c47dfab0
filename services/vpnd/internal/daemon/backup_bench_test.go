package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/backup"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkBackupRestore measures a backup through the API (POST
// /api/v1/backup, unencrypted) of a vpnd holding N users made by a
// generate job (every protocol's credentials, their name claims and
// events), and its restore into a fresh data dir: time and size.
// make bench BENCH=BackupRestore
func BenchmarkBackupRestore(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			v := start(b, dir, "--agent=false", "--rate-limit", "0")
			waitReady(b, v.GatewayURL)
			token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
			if err != nil {
				b.Fatal(err)
			}
			a := api{t: b, base: v.GatewayURL, token: strings.TrimSpace(string(token))}
			var created job.CreateResponse
			a.do(http.MethodPost, "/api/v1/jobs", job.CreateRequest{Kind: job.KindGenerate, Count: n, NamePrefix: "bench-",
				Template: &user.CreateRequest{}}, &created, nil)
			waitfor.Cond(b, 30*time.Minute, func() error {
				var j job.Job
				a.do(http.MethodGet, "/api/v1/jobs/"+created.Job.ID, nil, &j, nil)
				if j.State != job.StateCompleted {
					return fmt.Errorf("job %s: %d of %d done", j.State, j.Done, j.Total)
				}
				return nil
			})
			var size int
			var took, restore time.Duration
			b.ResetTimer()
			for range b.N {
				startAt := time.Now()
				resp, err := http.DefaultClient.Do(mustRequest(b, a, http.MethodPost, "/api/v1/backup"))
				if err != nil {
					b.Fatal(err)
				}
				data, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("backup: %d %v", resp.StatusCode, err)
				}
				took += time.Since(startAt)
				size = len(data)
				startAt = time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
				m, err := backup.RestoreDataDir(ctx, filepath.Join(b.TempDir(), "data"),
					func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, backup.RestoreOptions{})
				cancel()
				if err != nil {
					b.Fatalf("restore: %v", err)
				}
				restore += time.Since(startAt)
				if got, _ := m.Messages("KV_users"); got != uint64(n) {
					b.Fatalf("the backup holds %d users, want %d", got, n)
				}
			}
			b.ReportMetric(float64(size)/(1<<20), "MB")
			b.ReportMetric(took.Seconds()/float64(b.N), "s-backup")
			b.ReportMetric(restore.Seconds()/float64(b.N), "s-restore")
		})
	}
}
