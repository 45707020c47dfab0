package app_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
)

// joinCommand finds the command `vpn nodes add` printed and returns the
// token it passes.
func joinCommand(t *testing.T, stdout string) natsauth.JoinToken {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if rest, ok := strings.CutPrefix(line, "  vpn-agent --join "); ok {
			tok, err := natsauth.DecodeJoinToken(rest)
			if err != nil {
				t.Fatalf("the printed token does not decode: %v", err)
			}
			return tok
		}
	}
	t.Fatalf("no join command in:\n%s", stdout)
	return natsauth.JoinToken{}
}

// TestNodesEnrollCommands runs `vpn nodes add`, `enrollments`, `groups`
// and `revoke` against the real gateway and fleet service: add prints the
// commands to run on the new host (install from the gateway, or join
// with vpn-agent installed) and when its token expires (the
// whole response with -o json, the token alone with -q); revoke asks on a
// terminal, needs --yes without one, and changes nothing when refused.
func TestNodesEnrollCommands(t *testing.T) {
	h := newHarness(t)
	h.login()

	r := h.must("nodes", "add", "eu1", "--groups", "eu,de", "--ttl", "2h")
	if tok := joinCommand(t, r.stdout); tok.Node != "eu1" {
		t.Fatalf("token for node %q", tok.Node)
	}
	if !strings.Contains(r.stdout, "node eu1 enrolled (groups: de,eu); on the new host, as root, run:") ||
		!strings.Contains(r.stdout, "\n  curl -fsSL '"+h.url+"/install/agent.sh' | sh -s -- --token vpnjoin1.") || !strings.Contains(r.stdout, "The token works once, until ") || !strings.Contains(r.stdout, "(in 1h)") {
		t.Fatalf("add said:\n%s", r.stdout)
	}
	var added node.AddResponse
	if err := json.Unmarshal([]byte(h.must("nodes", "add", "eu2", "-o", "json").stdout), &added); err != nil {
		t.Fatal(err)
	}
	if tok, err := natsauth.DecodeJoinToken(added.Token); err != nil || tok.Node != "eu2" || added.Command != "vpn-agent --join "+added.Token ||
		added.InstallCommand != "curl -fsSL '"+h.url+"/install/agent.sh' | sh -s -- --token "+added.Token || added.Enrollment.State != node.EnrollPending {
		t.Fatalf("add -o json: %+v (%v)", added, err)
	}
	quiet := h.must("nodes", "add", "eu3", "-q").stdout
	if tok, err := natsauth.DecodeJoinToken(strings.TrimSuffix(quiet, "\n")); err != nil || tok.Node != "eu3" || strings.Count(quiet, "\n") != 1 {
		t.Fatalf("add -q printed %q (%v)", quiet, err)
	}

	list := h.must("nodes", "enrollments").stdout
	for _, want := range []string{"NODE", "STATE", "GROUPS", "JOINED", "CREATED", "pending (token expires in 1h)", "de,eu", "eu2", "eu3"} {
		if !strings.Contains(list, want) {
			t.Fatalf("enrollments lack %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "vpnjoin") {
		t.Fatalf("enrollments show a token:\n%s", list)
	}
	if got := h.must("nodes", "groups", "eu1", "asia, eu").stdout; got != "node eu1: groups asia,eu\n" {
		t.Fatalf("groups said %q", got)
	}
	if got := h.must("nodes", "groups", "eu3", "").stdout; got != "node eu3: groups -\n" {
		t.Fatalf("clearing groups said %q", got)
	}
	if nodes := h.must("nodes", "list").stdout; !strings.Contains(nodes, "eu1") || !strings.Contains(nodes, "pending") {
		t.Fatalf("nodes list does not show the pending node:\n%s", nodes)
	}

	var ue *app.UsageError
	if r := h.run("nodes", "revoke", "eu1"); !errors.As(r.err, &ue) || !strings.Contains(r.err.Error(), "--yes") {
		t.Fatalf("revoke without a terminal or --yes: %v", r.err)
	}
	r = h.runWith(app.Env{Stdin: strings.NewReader("n\n"), Interactive: true}, "nodes", "revoke", "eu1")
	if r.err == nil || !strings.Contains(r.err.Error(), "not revoked") || !strings.Contains(r.stderr, "revoke node eu1?") {
		t.Fatalf("refused confirmation: %v, asked %q", r.err, r.stderr)
	}
	if list := h.must("nodes", "enrollments").stdout; strings.Contains(list, "revoked") {
		t.Fatalf("a refused revoke revoked:\n%s", list)
	}
	r = h.runWith(app.Env{Stdin: strings.NewReader("y\n"), Interactive: true}, "nodes", "revoke", "eu1")
	if r.err != nil || r.stdout != "node eu1 revoked\n" {
		t.Fatalf("confirmed revoke: %v %q", r.err, r.stdout)
	}
	var en node.Enrollment
	if err := json.Unmarshal([]byte(h.must("nodes", "revoke", "eu2", "--yes", "-o", "json").stdout), &en); err != nil || en.State != node.EnrollRevoked {
		t.Fatalf("revoke --yes -o json: %+v (%v)", en, err)
	}
	var ens []node.Enrollment
	if err := json.Unmarshal([]byte(h.must("nodes", "enrollments", "-o", "json").stdout), &ens); err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, en := range ens {
		states[en.ID] = en.State
	}
	if states["eu1"] != node.EnrollRevoked || states["eu2"] != node.EnrollRevoked || states["eu3"] != node.EnrollPending {
		t.Fatalf("states after revoking: %v", states)
	}

	viewer := strings.TrimSpace(h.must("tokens", "create", "watcher", "--role", "viewer", "-q").stdout)
	if r := h.run("nodes", "add", "eu4", "--token", viewer); r.err == nil || !strings.Contains(r.err.Error(), "admin") {
		t.Fatalf("add with a viewer token: %v", r.err)
	}
	if r := h.run("nodes", "add", "eu.4"); r.err == nil || !strings.Contains(r.err.Error(), "name") {
		t.Fatalf("add with a bad name: %v", r.err)
	}
}
