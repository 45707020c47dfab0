package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// TestRuntimeStatusAndSwitch runs `vpn runtime status` and `vpn runtime
// switch` against the real gateway and users service: status shows each
// runtime the node's agent reported, the default and why, and the servers
// on each; switch refuses what the node lacks, an unknown runtime and an
// unknown node naming the field, and once accepted the next server created
// on the node names the new default while the running one stays put.
func TestRuntimeStatusAndSwitch(t *testing.T) {
	h := newHarness(t)
	h.login()
	h.must("nodes", "add", "eu1")
	h.putRuntimesNode("eu1", time.Now(), "docker", "process")
	srv := "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	h.putServer(srv, "eu1")
	h.reportServer(srv, server.Status{State: server.StateApplied, PublicHost: "203.0.113.7", Runtime: "docker"})

	var st node.RuntimesReply
	if err := json.Unmarshal([]byte(h.must("runtime", "status", "--node", "eu1", "-o", "json").stdout), &st.Nodes); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Default != "docker" || st.Nodes[0].Agent != node.AgentRunning || len(st.Nodes[0].Runtimes) != 2 {
		t.Fatalf("status: %+v", st.Nodes)
	}
	if rt := st.Nodes[0].Runtimes[0]; rt.Kind != "docker" || len(rt.Servers) != 1 || rt.Servers[0].ID != srv || rt.Servers[0].State != "applied" {
		t.Fatalf("docker runtime: %+v", rt)
	}
	table := h.must("runtime", "status").stdout
	for _, want := range []string{"NODE", "RUNTIME", "DEFAULT", "SERVERS", "docker", "process", "default (auto:", "reality (applied"} {
		if !strings.Contains(table, want) {
			t.Fatalf("status table lacks %q:\n%s", want, table)
		}
	}

	for _, tc := range []struct {
		args  []string
		field string
		code  int
	}{
		{[]string{"--node", "eu1", "containerd"}, "runtime", http.StatusBadRequest}, // the node lacks it
		{[]string{"--node", "eu1", "podman"}, "runtime", http.StatusBadRequest},     // no such runtime
		{[]string{"--node", "nowhere", "docker"}, "", http.StatusNotFound},          // not enrolled
	} {
		r := h.run(append([]string{"runtime", "switch"}, tc.args...)...)
		var ae *client.APIError
		if !errors.As(r.err, &ae) || ae.Status != tc.code || (tc.field != "" && (len(ae.Problem.Errors) != 1 || ae.Problem.Errors[0].Field != tc.field)) {
			t.Fatalf("switch %v: err %v (%+v), want %d on field %q", tc.args, r.err, ae, tc.code, tc.field)
		}
	}
	if got := h.must("runtime", "switch", "--node", "eu1", "process").stdout; !strings.Contains(got, "new servers on node eu1 start on process") {
		t.Fatalf("switch said %q", got)
	}
	if err := json.Unmarshal([]byte(h.must("runtime", "status", "--node", "eu1", "-o", "json").stdout), &st.Nodes); err != nil {
		t.Fatal(err)
	}
	if n := st.Nodes[0]; n.Default != "process" || !strings.HasPrefix(n.DefaultFrom, "switch") || n.Runtimes[0].Servers[0].ID != srv {
		t.Fatalf("after the switch: %+v", n)
	}
	var created server.Server
	if err := json.Unmarshal([]byte(h.must("servers", "deploy", "edge", "--node", "eu1", "--protocol", "socks5", "--port", "9001", "-o", "json").stdout), &created); err != nil {
		t.Fatal(err)
	}
	if created.Runtime != "process" {
		t.Fatalf("server created after the switch names runtime %q, want process", created.Runtime)
	}

	// Moves that cannot happen are refused before anything changes.
	move := func(rt string) error {
		_, err := bus.Request[server.Server](context.Background(), h.ns.Conn(), subject.ServersCmd(subject.ServersUpdate), server.UpdateRequest{ID: srv, Runtime: &rt})
		return err
	}
	for _, tc := range []struct {
		what, runtime, field string
		class                errs.Class
	}{
		{"the runtime it runs on", "docker", "runtime", errs.Invalid},
		{"a runtime the node lacks", "containerd", "runtime", errs.Invalid},
		{"no such runtime", "podman", "runtime", errs.Invalid},
	} {
		if err := move(tc.runtime); !errors.Is(err, tc.class) || len(errs.FieldsOf(err)) != 1 || errs.FieldsOf(err)[0].Field != tc.field {
			t.Fatalf("moving to %s: err %v, want %v on field %s", tc.what, err, tc.class, tc.field)
		}
	}
	h.putRuntimesNode("eu1", time.Now().Add(-time.Hour), "docker", "process")
	if err := move("process"); !errors.Is(err, errs.Conflict) || len(errs.FieldsOf(err)) != 1 || errs.FieldsOf(err)[0].Field != "node" {
		t.Fatalf("moving on a node that is down: err %v, want Conflict on field node", err)
	}
	s, err := bus.Request[server.Server](context.Background(), h.ns.Conn(), subject.ServersCmd(subject.ServersGet), server.GetRequest{ID: srv})
	if err != nil || s.Runtime != "" {
		t.Fatalf("after the refusals the server names runtime %q (%v), want none", s.Runtime, err)
	}
}

// putRuntimesNode registers a node whose agent offers kinds (the first is
// its default, chosen by auto), as a multi-runtime agent does, with its
// last heartbeat at beat.
func (h *harness) putRuntimesNode(id string, beat time.Time, kinds ...string) {
	h.t.Helper()
	kv, err := h.js.KeyValue(context.Background(), subject.BucketNodes)
	if err != nil {
		h.t.Fatal(err)
	}
	now := beat.UTC()
	n := node.Node{ID: id, Hostname: id, PublicAddr: "203.0.113.7", Runtime: kinds[0], RuntimeChosen: "auto: the docker engine answers at /var/run/docker.sock",
		State: node.StateRunning, StartedAt: now, HeartbeatAt: now, HeartbeatEvery: time.Minute, AgentVersion: "dev"}
	for _, k := range kinds {
		n.Runtimes = append(n.Runtimes, node.RuntimeInfo{Kind: k, Version: "1.0"})
	}
	data, _ := json.Marshal(n)
	if _, err := kv.Put(context.Background(), id, data); err != nil {
		h.t.Fatal(err)
	}
}
