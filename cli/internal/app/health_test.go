package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
	"github.com/vpnfleet/vpnfleet/services/health"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// startHealth runs the real health service, with short intervals, behind
// the harness's gateway until the test ends.
func (h *harness) startHealth() {
	h.t.Helper()
	env := h.newEnv()
	c := health.Defaults()
	c.DownAfter, c.LagAfter, c.EvalInterval = 2*time.Second, time.Second, 50*time.Millisecond
	c.HistoryStep, c.HistoryCoarse, c.HistorySettle, c.LeaseRetry = time.Second, 10*time.Second, 300*time.Millisecond, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- health.Run(ctx, c, env) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("health.Run: %v", err)
		}
	})
	waitfor.Cond(h.t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := bus.Request[event.NodesReply](ctx, env.NC, subject.HealthCmd(subject.HealthNodes), event.NodesRequest{})
		return err
	})
}

// TestHealthCommands checks node health in `vpn nodes list`, `vpn nodes
// stats`, `vpn users usage` and `vpn alerts list|ack` against the real
// health service.
func TestHealthCommands(t *testing.T) {
	h := newHarness(t)
	h.startHealth()
	h.login()
	h.must("users", "create", "alice")
	h.putNode("node-a", time.Now())
	h.putNode("node-b", time.Now().Add(-3*time.Hour))

	waitfor.Cond(t, 30*time.Second, func() error {
		h.putNode("node-a", time.Now())
		var ns []struct {
			ID         string `json:"id"`
			Health     string `json:"health"`
			HealthFrom string `json:"health_from"`
		}
		if err := json.Unmarshal([]byte(h.must("nodes", "list", "-o", "json").stdout), &ns); err != nil {
			return err
		}
		for _, n := range ns {
			if n.HealthFrom != "health" || (n.ID == "node-b" && n.Health != "down") {
				return fmt.Errorf("node %s: %s from %s", n.ID, n.Health, n.HealthFrom)
			}
		}
		return nil
	})
	if r := h.must("nodes", "list"); !strings.Contains(r.stdout, "down: ") {
		t.Fatalf("nodes list: %s", r.stdout)
	}

	r := h.must("nodes", "stats", "node-a", "--from", "1h", "--step", "1m", "-o", "json")
	var st event.StatsReply
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Node != "node-a" || st.Step != time.Minute {
		t.Fatalf("stats (%v): %s", err, r.stdout)
	}
	if r := h.run("nodes", "stats", "node-a", "--step", "soon"); r.err == nil || !strings.Contains(r.err.Error(), "--step") {
		t.Fatalf("bad step: %v", r.err)
	}
	if r := h.must("users", "usage", "alice", "--step", "1m"); !strings.HasPrefix(r.stdout, "alice: up 0, down 0 between ") {
		t.Fatalf("usage: %q", r.stdout)
	}

	var id string
	waitfor.Cond(t, 30*time.Second, func() error {
		r := h.must("alerts", "list", "--node", "node-b", "--severity", "critical", "-q")
		id = strings.TrimSpace(r.stdout)
		if id == "" || strings.Contains(id, "\n") {
			return fmt.Errorf("alerts %q", r.stdout)
		}
		return nil
	})
	if r := h.must("alerts", "list"); !strings.Contains(r.stdout, "NodeDown") || !strings.Contains(r.stdout, "node node-b is down") {
		t.Fatalf("alerts list: %s", r.stdout)
	}
	if r := h.must("alerts", "ack", id, "--comment", "retired"); !strings.Contains(r.stdout, "acknowledged by admin") {
		t.Fatalf("ack: %q", r.stdout)
	}
	if r := h.run("alerts", "ack", "nosuchalert"); r.err == nil || !strings.Contains(r.err.Error(), "no alert nosuchalert") {
		t.Fatalf("ack of an unknown alert: %v", r.err)
	}

	// A narrow terminal cuts the ids in the table; ack takes what it shows,
	// and any unique prefix of at least 4 characters, as git does.
	h.env["COLUMNS"] = "60"
	lines := strings.Split(h.must("alerts", "list", "--node", "node-b", "--severity", "critical").stdout, "\n")
	cell := strings.Fields(lines[1])[0]
	if !strings.HasSuffix(cell, "…") || !strings.HasPrefix(id, strings.TrimSuffix(cell, "…")) {
		t.Fatalf("the table does not cut id %s: %q", id, lines[1])
	}
	h.env["COLUMNS"] = "100"
	for _, given := range []string{cell, strings.TrimSuffix(cell, "…"), id[:4], id[:12]} {
		if r := h.run("alerts", "ack", given); r.err != nil || !strings.Contains(r.stdout, "alert "+id) {
			t.Fatalf("ack %q: %v %q", given, r.err, r.stdout)
		}
	}
	var ue *app.UsageError
	if r := h.run("alerts", "ack", id[:3]); !errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), "at least 4 characters") {
		t.Fatalf("ack of a 3-character prefix: %v", r.err)
	}
}

func TestSparkline(t *testing.T) {
	// The sparkline is exercised through `vpn users usage`; its shape is
	// checked here on known values.
	for _, c := range []struct {
		in   []int64
		want string
	}{{[]int64{0, 1, 2, 3, 4, 5, 6, 7}, "▁▂▃▄▅▆▇█"}, {[]int64{0, 0}, "▁▁"}, {nil, ""}} {
		if got := app.Sparkline(c.in); got != c.want {
			t.Errorf("sparkline(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
