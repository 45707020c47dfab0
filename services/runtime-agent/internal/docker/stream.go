package docker

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Logs streams the container's json-file log, demultiplexing stdout and
// stderr. Following ends when the container stops.
func (r *Runtime) Logs(ctx context.Context, id string, opts runtime.LogOptions) (*runtime.Stream[runtime.LogLine], error) {
	c, err := r.owned(ctx, id)
	if err != nil {
		return nil, err
	}
	tail := "all"
	if opts.Tail > 0 {
		tail = strconv.Itoa(opts.Tail)
	}
	body, err := r.cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true,
		Follow: opts.Follow, Tail: tail, Timestamps: opts.Timestamps,
	})
	if err != nil {
		return nil, classify(err, "reading logs of %s", id)
	}
	return runtime.Produce(ctx, 64, func(ctx context.Context, send func(runtime.LogLine) bool) error {
		defer body.Close()
		if err := demux(body, opts.Timestamps, send); err != nil {
			return fmt.Errorf("reading logs of %s: %w", id, err)
		}
		return nil
	}), nil
}

// demux reads the engine's multiplexed stream (8-byte headers: stream
// type, 3 zero bytes, big-endian payload size) and hands out whole lines.
func demux(rd io.Reader, timestamps bool, send func(runtime.LogLine) bool) error {
	br := bufio.NewReaderSize(rd, 32<<10)
	var hdr [8]byte
	partial := map[byte]*strings.Builder{1: {}, 2: {}}
	names := map[byte]string{1: "stdout", 2: "stderr"}
	emit := func(stream byte, line string) bool {
		l := runtime.LogLine{Stream: names[stream], Text: strings.TrimSuffix(line, "\r")}
		if timestamps {
			if ts, rest, ok := strings.Cut(l.Text, " "); ok {
				if t, err := time.Parse(time.RFC3339Nano, ts); err == nil {
					l.Time, l.Text = t, rest
				}
			}
		}
		return send(l)
	}
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				for _, s := range []byte{1, 2} {
					if p := partial[s]; p.Len() > 0 && !emit(s, p.String()) {
						return nil
					}
				}
				return nil
			}
			return err
		}
		stream := hdr[0]
		size := binary.BigEndian.Uint32(hdr[4:])
		payload := make([]byte, size)
		if _, err := io.ReadFull(br, payload); err != nil {
			return err
		}
		p, ok := partial[stream]
		if !ok {
			continue // stdin echo or system messages: not log lines
		}
		for _, piece := range strings.SplitAfter(string(payload), "\n") {
			if piece == "" {
				continue
			}
			if !strings.HasSuffix(piece, "\n") {
				p.WriteString(piece)
				continue
			}
			line := p.String() + strings.TrimSuffix(piece, "\n")
			p.Reset()
			if !emit(stream, line) {
				return nil
			}
		}
	}
}

// errNotRunning is the cause of stats asked of a stopped container.
var errNotRunning = errors.New("not running")

// Stats takes one sample; the engine waits for a second reading so CPU%
// covers about a second.
func (r *Runtime) Stats(ctx context.Context, id string) (runtime.Stats, error) {
	c, err := r.owned(ctx, id)
	if err != nil {
		return runtime.Stats{}, err
	}
	if c.State == nil || !c.State.Running {
		return runtime.Stats{}, errs.Wrap(errs.Conflict, errNotRunning, "reading stats of %s", id)
	}
	res, err := r.cli.ContainerStats(ctx, c.ID, client.ContainerStatsOptions{Stream: false})
	if err != nil {
		return runtime.Stats{}, classify(err, "reading stats of %s", id)
	}
	defer res.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return runtime.Stats{}, fmt.Errorf("decoding stats of %s: %w", id, err)
	}
	return toStats(s, limitOf(c)), nil
}

// StreamStats follows the engine's own stats stream (one sample a second,
// whatever interval says) until ctx ends or the container stops.
func (r *Runtime) StreamStats(ctx context.Context, id string, _ time.Duration) (*runtime.Stream[runtime.Stats], error) {
	c, err := r.owned(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := r.cli.ContainerStats(ctx, c.ID, client.ContainerStatsOptions{Stream: true})
	if err != nil {
		return nil, classify(err, "streaming stats of %s", id)
	}
	limit := limitOf(c)
	return runtime.Produce(ctx, 1, func(ctx context.Context, send func(runtime.Stats) bool) error {
		defer res.Body.Close()
		dec := json.NewDecoder(res.Body)
		for {
			var s container.StatsResponse
			if err := dec.Decode(&s); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return fmt.Errorf("decoding stats of %s: %w", id, err)
			}
			if s.Read.IsZero() || s.Read.Year() <= 1 {
				return nil // the container stopped
			}
			if !send(toStats(s, limit)) {
				return nil
			}
		}
	}), nil
}

// limitOf is the container's own memory limit: the engine reports the
// host's memory when there is none, which the contract reports as 0.
func limitOf(c container.InspectResponse) uint64 {
	if c.HostConfig == nil || c.HostConfig.Memory <= 0 {
		return 0
	}
	return uint64(c.HostConfig.Memory)
}

// toStats converts an engine sample the way `docker stats` does: CPU% from
// the deltas to the previous sample, memory without the page cache.
func toStats(s container.StatsResponse, limit uint64) runtime.Stats {
	out := runtime.Stats{Time: s.Read, MemoryLimitBytes: limit, PIDs: s.PidsStats.Current}
	cpu := float64(s.CPUStats.CPUUsage.TotalUsage) - float64(s.PreCPUStats.CPUUsage.TotalUsage)
	sys := float64(s.CPUStats.SystemUsage) - float64(s.PreCPUStats.SystemUsage)
	online := float64(s.CPUStats.OnlineCPUs)
	if online == 0 {
		online = float64(len(s.CPUStats.CPUUsage.PercpuUsage))
	}
	if cpu > 0 && sys > 0 {
		out.CPUPercent = cpu / sys * online * 100
	}
	mem := s.MemoryStats.Usage
	for _, k := range []string{"total_inactive_file", "inactive_file"} {
		if v, ok := s.MemoryStats.Stats[k]; ok && v < mem {
			mem -= v
			break
		}
	}
	out.MemoryBytes = mem
	for _, n := range s.Networks {
		out.NetRxBytes += n.RxBytes
		out.NetTxBytes += n.TxBytes
	}
	for _, e := range s.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			out.BlockReadBytes += e.Value
		case "write":
			out.BlockWriteBytes += e.Value
		}
	}
	return out
}
