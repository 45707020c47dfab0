package procstat

import (
	"os"
	"testing"
	"time"
)

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel has accounted at least one tick more.
	x := 0
	for {
		for i := range 1_000_000 {
			x += i
		}
		after, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			if after-before > time.Minute {
				t.Fatalf("CPU time jumped from %s to %s", before, after)
			}
			return
		}
	}
}

func TestRSSBytes(t *testing.T) {
	rss, err := RSSBytes(os.Getpid())
	if err != nil || rss == 0 {
		t.Fatalf("RSSBytes = %d, %v", rss, err)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("CPUTime of no process succeeded")
	}
}
