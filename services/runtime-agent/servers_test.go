package agent_test

import (
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestServerEndToEnd is issue 5's acceptance path, on the process runtime
// (everywhere) and on Docker and containerd (where they answer), with Xray
// unprivileged (issue 17: uid 65532, no capability, no_new_privs): a server deployed from
// the servers bucket, a user created through the registry, its generated
// links parsed into a real Xray client that fetches a page through the
// tunnel, for every protocol; then disabled, enabled and deleted users
// are refused and let in again, live, with no Xray restart.
func TestServerEndToEnd(t *testing.T) {
	for _, rt := range []string{"process", "docker", "containerd"} {
		t.Run(rt, func(t *testing.T) {
			if rt != "process" {
				dockerOrSkip(t) // containerd is Docker's own one here
			}
			testEndToEnd(t, rt)
		})
	}
}

func testEndToEnd(t *testing.T, rt string) {
	f := newFleet(t, rt)
	f.startAgent()
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	bin := xraytest.Binary(t)

	srv := f.createServer("edge", dest)
	applied := f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	if applied.Status.PublicHost != "127.0.0.1" {
		t.Fatalf("public host %q, want the node's 127.0.0.1", applied.Status.PublicHost)
	}
	f.waitEvent(srv.ID, event.ServerApplied)
	first, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	f.assertUnprivileged(srv.ID)

	u := f.createUser("alice")
	links := f.links(u.ID, srv.ID)
	clients := map[user.Protocol]*xraytest.Client{}
	for _, p := range user.Protocols {
		link, ok := links[p]
		if !ok {
			t.Fatalf("no %s link for alice: %v", p, links)
		}
		clients[p] = xraytest.StartClient(t, bin, outbound(t, link))
	}
	for _, p := range user.Protocols {
		connects(t, clients[p], target, "alice over "+string(p))
	}

	f.userCmd(subject.UsersDisable, u.ID)
	for _, p := range user.Protocols {
		refused(t, clients[p], target, "disabled alice over "+string(p))
	}
	f.userCmd(subject.UsersEnable, u.ID)
	for _, p := range user.Protocols {
		connects(t, clients[p], target, "enabled alice over "+string(p))
	}
	f.userCmd(subject.UsersDelete, u.ID)
	for _, p := range user.Protocols {
		refused(t, clients[p], target, "deleted alice over "+string(p))
	}

	last, err := f.running(srv.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last.Instance != first.Instance {
		t.Fatalf("xray restarted for user changes: %s -> %s", first.Instance, last.Instance)
	}
	if rt == "docker" && !strings.HasPrefix(f.image, "vpnfleet/xray-test:") {
		t.Fatalf("image %q", f.image)
	}
}
