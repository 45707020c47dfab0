package agent_test

import (
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkMigrationGap moves a 4-inbound server Docker → containerd →
// process → Docker by naming its runtime (the agent stops it on one and
// starts it on the other, same config and ports, then adds its users),
// with 0 and 10,000 users besides one probe user whose VLESS+REALITY
// client opens a new connection through the server every 50 ms. After each
// step Xray on the target holds exactly the desired users, the server runs
// on the target alone and the probe passes traffic. It reports, per step,
// the new-connection gap (last probe through before the move to the first
// one through after it) and the total time from the request to the status
// applied on the target with every user.
func BenchmarkMigrationGap(b *testing.B) {
	dockerOrSkip(b)
	for _, n := range []int{0, 10_000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			for range b.N {
				benchMigration(b, n)
			}
		})
	}
}

func benchMigration(b *testing.B, n int) {
	f := newFleet(b, "docker")
	b.Cleanup(func() {
		cfg := f.agentConfig()
		_ = exec.Command("ctr", "-a", cfg.ContainerdAddr, "-n", "vpn", "images", "rm", "docker.io/"+f.image).Run()
	})
	ids := f.putUsers(n)
	f.startAgent()
	dest := xraytest.StartTLSDest(b, sni)
	target := xraytest.StartHTTPTarget(b)
	srv := f.createServer("edge", dest)
	probe := f.createUser("probe")
	want := append(ids, probe.ID)
	f.waitUsersApplied(srv.ID, n+1, time.Time{}, 10*time.Minute)
	c := xraytest.StartClient(b, xraytest.Binary(b), outbound(b, f.links(probe.ID, srv.ID)[user.VLESSReality]))
	connects(b, c, target, "probe before the moves")

	from := "docker"
	for _, to := range []string{"containerd", "process", "docker"} {
		p := startProbe(c, target)
		start := time.Now()
		moved := f.setRuntime(srv.ID, to)
		var st server.Status
		waitfor.Cond(b, 10*time.Minute, func() error {
			s, err := f.getServer(srv.ID)
			if err != nil {
				return err
			}
			st = s.Status
			if st.Runtime != to || st.State != server.StateApplied || st.UsersApplied != n+1 || st.AppliedRevision != moved.Revision {
				return fmt.Errorf("status %s on %q, %d of %d users, want applied on %s with %d", st.State, st.Runtime, st.UsersApplied, st.UsersDesired, to, n+1)
			}
			return nil
		})
		total := time.Since(start)
		waitfor.Cond(b, time.Minute, func() error { return p.throughSince(start.Add(total)) })
		gap := p.stop()
		f.assertOnlyOn(srv.ID, runtime.Kind(to))
		if err := holdsExactly(f.ctx(), f.xrayClient(srv.ID), srv, sortedCopy(want)); err != nil {
			b.Fatalf("after the move to %s: %v", to, err)
		}
		b.Logf("%s → %s with %d users: gap %s, total %s", from, to, n, gap, total)
		b.ReportMetric(float64(gap.Milliseconds()), "ms-gap-"+from+"-"+to)
		b.ReportMetric(total.Seconds(), "s-total-"+from+"-"+to)
		from = to
	}
}

// gapProbe opens a new connection through a client every 50 ms and keeps
// when each went through or failed.
type gapProbe struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	oks   []time.Time
	fails []time.Time
}

func startProbe(c *xraytest.Client, target string) *gapProbe {
	p := &gapProbe{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			at := time.Now()
			err := fetchOnce(c, target)
			p.mu.Lock()
			if err == nil {
				p.oks = append(p.oks, at)
			} else {
				p.fails = append(p.fails, at)
			}
			p.mu.Unlock()
			select {
			case <-p.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// throughSince reports whether a probe started after t went through.
func (p *gapProbe) throughSince(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.oks) > 0 && p.oks[len(p.oks)-1].After(t) {
		return nil
	}
	return fmt.Errorf("no probe through since %s (%d failed so far)", t.Format(time.RFC3339Nano), len(p.fails))
}

// stop ends the probe and returns the new-connection gap: from the last
// probe through before the first failure to the first through after the
// last failure (0 when none failed).
func (p *gapProbe) stop() time.Duration {
	close(p.stopc)
	<-p.done
	if len(p.fails) == 0 {
		return 0
	}
	first, last := p.fails[0], p.fails[len(p.fails)-1]
	var before, after time.Time
	for _, ok := range p.oks {
		if ok.Before(first) {
			before = ok
		}
		if ok.After(last) && after.IsZero() {
			after = ok
		}
	}
	if before.IsZero() {
		before = first
	}
	return after.Sub(before)
}
