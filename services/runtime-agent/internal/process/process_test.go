package process_test

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/process"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
)

func config(dir string) runtimetest.Config {
	return runtimetest.Config{
		New: func(tb testing.TB, node string) runtime.Runtime {
			rt, err := process.New(process.Options{
				Node:    node,
				DataDir: dir,
				Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				tb.Fatalf("process.New: %v", err)
			}
			tb.Cleanup(func() { rt.Close() })
			return rt
		},
	}
}

func TestContract(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	runtimetest.Run(t, config(t.TempDir()))
}

func BenchmarkRuntime(b *testing.B) {
	runtimetest.Bench(b, config(b.TempDir()))
}

// TestAdoptAfterRestart checks that a new Runtime over the same data dir
// sees the process the previous one started, can stop it, and that List
// does not lie about it.
func TestAdoptAfterRestart(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	ctx := t.Context()
	dir := t.TempDir()
	bin := runtimetest.Workload(t)
	opts := process.Options{Node: "adopt", DataDir: dir, Logger: slog.New(slog.DiscardHandler)}
	first, err := process.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	id, err := first.Create(ctx, runtime.Spec{Name: "adoptee", Image: bin})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	before, err := first.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	first.Close()

	second, err := process.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	ws, err := second.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ws) != 1 || ws[0].State != runtime.StateRunning || ws[0].PID != before.PID {
		t.Fatalf("after agent restart List = %+v, want %s running as pid %d", ws, id, before.PID)
	}
	ev, err := second.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Stop(ctx, id, 10*time.Second); err != nil {
		t.Fatalf("Stop of an adopted process: %v", err)
	}
	if e := <-ev.C; e.Kind != runtime.EventDie || e.ExitCode != -1 {
		t.Errorf("adopted process died with %+v, want die with unknown (-1) code", e)
	}
	w, err := second.Inspect(ctx, id)
	if err != nil || w.State != runtime.StateExited {
		t.Fatalf("Inspect after stop: %+v, %v", w, err)
	}
	if err := second.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
}
