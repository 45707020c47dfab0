package meter

import (
	"fmt"
	"log/slog"
	"testing"
)

// BenchmarkObserve measures one metering round (diff, durable state write,
// record queued) for an Xray holding counters of n users, of whom a tenth
// had traffic in the round — the cost that grows as users come and go,
// since Xray keeps a removed user's counters until it restarts.
func BenchmarkObserve(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			m, err := Open(b.TempDir(), "n1", &sink{}, slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			counters := make(map[string]Counter, n)
			for i := range n {
				counters[fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)] = Counter{Up: 1, Down: 1}
			}
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				for j := i % 10; j < n; j += 10 {
					id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", j)
					c := counters[id]
					counters[id] = Counter{Up: c.Up + 100, Down: c.Down + 1000}
				}
				s := m.out.(*sink)
				s.msgs = s.msgs[:0]
				b.StartTimer()
				if _, err := m.Observe([]Reading{{Instance: "x", Counters: counters}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
