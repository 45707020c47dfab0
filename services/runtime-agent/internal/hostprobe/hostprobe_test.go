package hostprobe

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSampleThisHostIsPlausible(t *testing.T) {
	p := New("n1", t.TempDir())
	// Burn a little CPU so the interval's busy share is measurable.
	x := 0
	for i := range 20_000_000 {
		x += i
	}
	_ = x
	s, err := p.Sample()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case s.MemTotalBytes == 0 || s.MemUsedBytes == 0 || s.MemUsedBytes > s.MemTotalBytes:
		t.Errorf("memory %d used of %d", s.MemUsedBytes, s.MemTotalBytes)
	case s.DiskTotal == 0 || s.DiskUsed > s.DiskTotal:
		t.Errorf("disk %d used of %d", s.DiskUsed, s.DiskTotal)
	case s.CPUPercent < 0 || s.CPUPercent > 100:
		t.Errorf("cpu %.1f%%", s.CPUPercent)
	case s.UptimeSeconds <= 0:
		t.Errorf("uptime %f", s.UptimeSeconds)
	case s.CPUs < 1:
		t.Errorf("cpus %d", s.CPUs)
	}
}

func TestUnreadableSourcesAreReportedNotFatal(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "loadavg"), []byte("0.50 0.25 0.10 1/100 42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Probe{node: "n1", proc: dir}
	s, err := p.Sample()
	if err == nil {
		t.Fatal("want an error naming the missing sources")
	}
	if s.Load1 != 0.5 || s.Load15 != 0.1 {
		t.Fatalf("readable source lost: %+v", s)
	}
}
