// Package hostprobe samples the host's resources from /proc and statfs:
// CPU (as a percentage over the interval since the previous sample),
// memory, load, disk use of the agent's data dir, network counters and
// uptime. Linux only, like the agent.
package hostprobe

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/node"
)

// Probe samples one host. It remembers the previous CPU counters so that
// each sample reports use over the interval; it is safe for concurrent use.
type Probe struct {
	node    string
	diskDir string
	proc    string // /proc, replaceable in tests

	mu              sync.Mutex
	lastBusy, lastT uint64
}

// New returns a probe for node that reports disk use of diskDir.
func New(nodeID, diskDir string) *Probe {
	p := &Probe{node: nodeID, diskDir: diskDir, proc: "/proc"}
	p.lastBusy, p.lastT, _ = p.cpuTimes()
	return p
}

// Sample reads every source once. A source that cannot be read leaves its
// fields zero and is reported in the error, so one unreadable file never
// hides the rest.
func (p *Probe) Sample() (node.HostStats, error) {
	s := node.HostStats{Node: p.node, Time: time.Now().UTC(), CPUs: runtime.NumCPU(), DiskPath: p.diskDir}
	var problems []string
	note := func(what string, err error) {
		if err != nil {
			problems = append(problems, what+": "+err.Error())
		}
	}
	note("cpu", p.cpu(&s))
	note("memory", p.memory(&s))
	note("load", p.load(&s))
	note("disk", p.disk(&s))
	note("network", p.network(&s))
	note("uptime", p.uptime(&s))
	if len(problems) > 0 {
		return s, fmt.Errorf("sampling host: %s", strings.Join(problems, "; "))
	}
	return s, nil
}

func (p *Probe) cpuTimes() (busy, total uint64, err error) {
	data, err := os.ReadFile(p.proc + "/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat first line %q", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing /proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 { // idle and iowait are not busy
			busy += n
		}
	}
	return busy, total, nil
}

func (p *Probe) cpu(s *node.HostStats) error {
	busy, total, err := p.cpuTimes()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if dt := total - p.lastT; total > p.lastT && busy >= p.lastBusy {
		s.CPUPercent = 100 * float64(busy-p.lastBusy) / float64(dt)
	}
	p.lastBusy, p.lastT = busy, total
	return nil
}

func (p *Probe) memory(s *node.HostStats) error {
	f, err := os.Open(p.proc + "/meminfo")
	if err != nil {
		return err
	}
	defer f.Close()
	vals := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 {
			n, _ := strconv.ParseUint(fields[1], 10, 64)
			vals[strings.TrimSuffix(fields[0], ":")] = n * 1024
		}
	}
	s.MemTotalBytes = vals["MemTotal"]
	if avail, ok := vals["MemAvailable"]; ok && avail <= s.MemTotalBytes {
		s.MemUsedBytes = s.MemTotalBytes - avail
	}
	return sc.Err()
}

func (p *Probe) load(s *node.HostStats) error {
	data, err := os.ReadFile(p.proc + "/loadavg")
	if err != nil {
		return err
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return fmt.Errorf("unexpected /proc/loadavg %q", data)
	}
	s.Load1, _ = strconv.ParseFloat(f[0], 64)
	s.Load5, _ = strconv.ParseFloat(f[1], 64)
	s.Load15, _ = strconv.ParseFloat(f[2], 64)
	return nil
}

func (p *Probe) disk(s *node.HostStats) error {
	if p.diskDir == "" {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(p.diskDir, &st); err != nil {
		return err
	}
	s.DiskTotal = st.Blocks * uint64(st.Bsize)
	s.DiskUsed = (st.Blocks - st.Bfree) * uint64(st.Bsize)
	return nil
}

// network sums every interface except loopback.
func (p *Probe) network(s *node.HostStats) error {
	data, err := os.ReadFile(p.proc + "/net/dev")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 9 {
			continue
		}
		rx, _ := strconv.ParseUint(f[0], 10, 64)
		tx, _ := strconv.ParseUint(f[8], 10, 64)
		s.NetRxBytes += rx
		s.NetTxBytes += tx
	}
	return nil
}

func (p *Probe) uptime(s *node.HostStats) error {
	data, err := os.ReadFile(p.proc + "/uptime")
	if err != nil {
		return err
	}
	f := strings.Fields(string(data))
	if len(f) < 1 {
		return fmt.Errorf("unexpected /proc/uptime %q", data)
	}
	s.UptimeSeconds, err = strconv.ParseFloat(f[0], 64)
	return err
}
