package process

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times. It is 100 on
// every Linux architecture the agent ships for, and reading it properly
// (sysconf) would need cgo.
const clockTicks = 100

// cpuSample is the previous CPU reading of a workload, so CPU% covers the
// time since the last sample.
type cpuSample struct {
	at    time.Time
	ticks uint64
}

// Stats reads /proc/<pid> of the main process. CPU% covers the time since
// the previous sample, or since the process started for the first one.
func (r *Runtime) Stats(_ context.Context, id string) (runtime.Stats, error) {
	pid, err := r.pidOf(id)
	if err != nil {
		return runtime.Stats{}, err
	}
	st, err := readStat(pid)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("reading stats of %s: %w", id, err)
	}
	now := time.Now()
	ticks := st.utime + st.stime
	r.mu.Lock()
	prev, ok := r.cpu[id]
	if !ok {
		prev = cpuSample{at: bootTime().Add(time.Duration(st.start) * time.Second / clockTicks)}
	}
	r.cpu[id] = cpuSample{at: now, ticks: ticks}
	r.mu.Unlock()

	out := runtime.Stats{Time: now, PIDs: st.threads}
	if wall := now.Sub(prev.at).Seconds(); wall > 0 && ticks >= prev.ticks {
		out.CPUPercent = float64(ticks-prev.ticks) / clockTicks / wall * 100
	}
	status, err := readKV(fmt.Sprintf("/proc/%d/status", pid), ":")
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("reading memory of %s: %w", id, err)
	}
	out.MemoryBytes = parseKB(status["VmRSS"])
	if io, err := readKV(fmt.Sprintf("/proc/%d/io", pid), ":"); err == nil {
		out.BlockReadBytes, _ = strconv.ParseUint(io["read_bytes"], 10, 64)
		out.BlockWriteBytes, _ = strconv.ParseUint(io["write_bytes"], 10, 64)
	}
	return out, nil
}

// StreamStats samples every interval until ctx ends or the process stops.
func (r *Runtime) StreamStats(ctx context.Context, id string, interval time.Duration) (*runtime.Stream[runtime.Stats], error) {
	if _, err := r.Inspect(ctx, id); err != nil {
		return nil, err
	}
	return runtime.PollStats(ctx, interval, func(ctx context.Context) (runtime.Stats, error) {
		return r.Stats(ctx, id)
	}), nil
}

func readKV(path, sep string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

// parseKB reads "1234 kB" as bytes.
func parseKB(s string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
	return n * 1024
}

// bootTime is when the host booted, from /proc/stat btime.
func bootTime() time.Time {
	kv, err := readKV("/proc/stat", " ")
	if err != nil {
		return time.Now()
	}
	sec, err := strconv.ParseInt(kv["btime"], 10, 64)
	if err != nil {
		return time.Now()
	}
	return time.Unix(sec, 0)
}
