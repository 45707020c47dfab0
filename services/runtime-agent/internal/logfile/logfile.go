// Package logfile reads a workload's captured output from a file: the last
// N lines, then, when following, whatever is appended. The process and
// containerd runtimes have the workload write straight into the file (no
// pipe through the agent), so workloads keep logging while the agent
// restarts, and this package is how Logs reads it back.
package logfile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
)

// PollInterval is how often a follower looks for new output. Files give no
// portable change notification without a dependency, and a log follower
// can afford a tenth of a second.
const PollInterval = 100 * time.Millisecond

// Stream returns the lines of the file at path as selected by opts. When
// following, the stream ends once ctx ends or, at the end of the file,
// alive reports false (the workload stopped, so nothing more will come). A
// missing file is an empty log.
func Stream(ctx context.Context, path string, opts runtime.LogOptions, alive func() bool) *runtime.Stream[runtime.LogLine] {
	return runtime.Produce(ctx, 64, func(ctx context.Context, send func(runtime.LogLine) bool) error {
		f, err := openWait(ctx, path, opts.Follow, alive)
		if err != nil || f == nil {
			return err
		}
		defer f.Close()
		if opts.Tail > 0 {
			if err := seekTail(f, opts.Tail); err != nil {
				return fmt.Errorf("seeking log tail: %w", err)
			}
		}
		r := bufio.NewReaderSize(f, 64<<10)
		var partial strings.Builder
		emit := func(s string) bool {
			return send(runtime.LogLine{Text: strings.TrimSuffix(s, "\r")})
		}
		ticker := (*time.Ticker)(nil)
		defer func() {
			if ticker != nil {
				ticker.Stop()
			}
		}()
		for {
			chunk, err := r.ReadString('\n')
			if len(chunk) > 0 {
				partial.WriteString(chunk)
				if strings.HasSuffix(chunk, "\n") {
					line := strings.TrimSuffix(partial.String(), "\n")
					partial.Reset()
					if !emit(line) {
						return nil
					}
					continue
				}
			}
			if err == nil {
				continue
			}
			if !errors.Is(err, io.EOF) {
				return fmt.Errorf("reading log %s: %w", path, err)
			}
			// At the end of what is written so far.
			if !opts.Follow || !alive() {
				// Read once more after seeing the workload gone, so
				// lines written just before it stopped are not lost.
				rest, _ := io.ReadAll(r)
				partial.Write(rest)
				for _, line := range strings.SplitAfter(partial.String(), "\n") {
					if line == "" {
						continue
					}
					if !emit(strings.TrimSuffix(line, "\n")) {
						return nil
					}
				}
				return nil
			}
			if ticker == nil {
				ticker = time.NewTicker(PollInterval)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-ticker.C:
			}
		}
	})
}

// openWait opens path; when following a log not written yet, it waits for
// the file while the workload is alive. A nil file means: empty log.
func openWait(ctx context.Context, path string, follow bool, alive func() bool) (*os.File, error) {
	var ticker *time.Ticker
	for {
		f, err := os.Open(path)
		if err == nil {
			if ticker != nil {
				ticker.Stop()
			}
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("opening log: %w", err)
		}
		if !follow || !alive() {
			return nil, nil
		}
		if ticker == nil {
			ticker = time.NewTicker(PollInterval)
			defer ticker.Stop()
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-ticker.C:
		}
	}
}

// seekTail positions f at the start of its last n lines, reading backwards
// in blocks so a large log is not read whole.
func seekTail(f *os.File, n int) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	const block = 32 << 10
	buf := make([]byte, block)
	pos := size
	newlines := 0
	// A trailing newline ends the last line; it does not start a new one.
	if size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			return err
		}
		if last[0] == '\n' {
			pos = size - 1
		}
	}
	for pos > 0 {
		start := pos - block
		if start < 0 {
			start = 0
		}
		chunk := buf[:pos-start]
		if _, err := f.ReadAt(chunk, start); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		for i := len(chunk) - 1; i >= 0; i-- {
			if chunk[i] == '\n' {
				newlines++
				if newlines == n {
					_, err := f.Seek(start+int64(i)+1, io.SeekStart)
					return err
				}
			}
		}
		pos = start
	}
	_, err = f.Seek(0, io.SeekStart)
	return err
}

// Open creates (or appends to) the log file at path for a workload to write
// into, making its directory.
func Open(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("making log dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	return f, nil
}
