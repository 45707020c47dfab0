package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// cpuSample is the previous CPU reading of a workload, so CPU% covers the
// time since the last sample.
type cpuSample struct {
	at    time.Time
	usage uint64 // nanoseconds of CPU
}

// errNotRunning is the cause of stats asked of a stopped workload.
var errNotRunning = errors.New("not running")

// Stats reads the task's cgroup metrics. CPU% covers the time since the
// previous sample, or since the task started for the first one.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	ctx = r.nsCtx(ctx)
	c, labels, err := r.owned(ctx, id)
	if err != nil {
		return runtime.Stats{}, err
	}
	t, err := c.Task(ctx, nil)
	if cerrdefs.IsNotFound(err) {
		return runtime.Stats{}, errs.Wrap(errs.Conflict, errNotRunning, "reading stats of %s", id)
	}
	if err != nil {
		return runtime.Stats{}, classify(err, "loading task of %s", id)
	}
	if st, err := t.Status(ctx); err != nil || st.Status != client.Running {
		return runtime.Stats{}, errs.Wrap(errs.Conflict, errNotRunning, "reading stats of %s", id)
	}
	m, err := t.Metrics(ctx)
	if err != nil {
		return runtime.Stats{}, classify(err, "reading metrics of %s", id)
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("decoding metrics of %s: %w", id, err)
	}
	now := time.Now()
	var out runtime.Stats
	var usage uint64
	switch v := data.(type) {
	case *v1.Metrics:
		out, usage = fromV1(v)
	case *v2.Metrics:
		out, usage = fromV2(v)
	default:
		return runtime.Stats{}, fmt.Errorf("decoding metrics of %s: unknown type %T", id, data)
	}
	out.Time = now

	started, _ := time.Parse(time.RFC3339Nano, labels[labelStarted])
	r.mu.Lock()
	prev, ok := r.cpu[id]
	if !ok {
		prev = cpuSample{at: started}
	}
	r.cpu[id] = cpuSample{at: now, usage: usage}
	r.mu.Unlock()
	if wall := now.Sub(prev.at); !prev.at.IsZero() && wall > 0 && usage >= prev.usage {
		out.CPUPercent = float64(usage-prev.usage) / float64(wall.Nanoseconds()) * 100
	}
	return out, nil
}

// StreamStats samples every interval until ctx ends or the task stops.
func (r *Runtime) StreamStats(ctx context.Context, id string, interval time.Duration) (*runtime.Stream[runtime.Stats], error) {
	if _, _, err := r.owned(r.nsCtx(ctx), id); err != nil {
		return nil, err
	}
	return runtime.PollStats(ctx, interval, func(ctx context.Context) (runtime.Stats, error) {
		return r.Stats(ctx, id)
	}), nil
}

// noLimit is above any real limit: cgroup v1 reports "unlimited" as a
// page-rounded maximum int64.
const noLimit = 1 << 62

func fromV1(m *v1.Metrics) (runtime.Stats, uint64) {
	var out runtime.Stats
	var usage uint64
	if m.CPU != nil && m.CPU.Usage != nil {
		usage = m.CPU.Usage.Total
	}
	if mem := m.Memory; mem != nil && mem.Usage != nil {
		out.MemoryBytes = mem.Usage.Usage
		if mem.TotalInactiveFile < out.MemoryBytes {
			out.MemoryBytes -= mem.TotalInactiveFile
		}
		if mem.Usage.Limit < noLimit {
			out.MemoryLimitBytes = mem.Usage.Limit
		}
	}
	if m.Blkio != nil {
		for _, e := range m.Blkio.IoServiceBytesRecursive {
			switch strings.ToLower(e.Op) {
			case "read":
				out.BlockReadBytes += e.Value
			case "write":
				out.BlockWriteBytes += e.Value
			}
		}
	}
	if m.Pids != nil {
		out.PIDs = m.Pids.Current
	}
	return out, usage
}

func fromV2(m *v2.Metrics) (runtime.Stats, uint64) {
	var out runtime.Stats
	var usage uint64
	if m.CPU != nil {
		usage = m.CPU.UsageUsec * 1000
	}
	if mem := m.Memory; mem != nil {
		out.MemoryBytes = mem.Usage
		if mem.InactiveFile < out.MemoryBytes {
			out.MemoryBytes -= mem.InactiveFile
		}
		if mem.UsageLimit < noLimit {
			out.MemoryLimitBytes = mem.UsageLimit
		}
	}
	if m.Io != nil {
		for _, e := range m.Io.Usage {
			out.BlockReadBytes += e.Rbytes
			out.BlockWriteBytes += e.Wbytes
		}
	}
	if m.Pids != nil {
		out.PIDs = m.Pids.Current
	}
	return out, usage
}

// imageHandler reports each blob a pull fetches as one progress step; the
// containerd client does not stream byte counts without polling the
// content store.
func imageHandler(progress func(runtime.Progress)) images.HandlerFunc {
	return func(_ context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		progress(runtime.Progress{Layer: desc.Digest.String(), Status: "fetching " + desc.MediaType, Total: desc.Size})
		return nil, nil
	}
}
