package agent_test

import (
	"fmt"
	"net"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestServerBelowPort1024 deploys a server with an inbound on a port
// below 1024 on each runtime (issue 17): Xray holds CAP_NET_BIND_SERVICE
// and nothing else, as the Xray user where the runtime can give a non-root
// user a capability (processes, containerd) and as uid 0 on Docker, which
// cannot; a real client passes traffic through that port.
func TestServerBelowPort1024(t *testing.T) {
	const netBindService = uint64(1) << 10
	for _, tt := range []struct {
		runtime string
		uid     uint32
	}{{"process", 65532}, {"docker", 0}, {"containerd", 65532}} {
		t.Run(tt.runtime, func(t *testing.T) {
			if tt.runtime != "process" {
				dockerOrSkip(t)
			}
			f := newFleet(t, tt.runtime)
			f.startAgent()
			s := f.serveBelow1024("alice").srv
			f.waitEvent(s.ID, event.ServerApplied)

			rs, err := f.running(s.ID)
			if err != nil {
				t.Fatal(err)
			}
			w, err := f.agentRuntime().Inspect(f.ctx(), rs.Workload)
			if err != nil {
				t.Fatal(err)
			}
			st, err := runtimetest.ReadProcStatus(w.PID)
			if err != nil {
				t.Fatal(err)
			}
			if st.UIDs != [4]uint32{tt.uid, tt.uid, tt.uid, tt.uid} {
				t.Errorf("xray uids %v, want %d", st.UIDs, tt.uid)
			}
			if st.CapEff != netBindService || st.CapPrm != netBindService || st.CapBnd != netBindService || !st.NoNewPrivs {
				t.Errorf("xray CapEff %#x CapPrm %#x CapBnd %#x NoNewPrivs %v; want only CAP_NET_BIND_SERVICE (%#x) and no_new_privs",
					st.CapEff, st.CapPrm, st.CapBnd, st.NoNewPrivs, netBindService)
			}

		})
	}
}

// lowServer is a server whose SOCKS5 inbound listens below port 1024, with
// a client of a user through it.
type lowServer struct {
	srv          server.Server
	client       *xraytest.Client
	dest, target string // REALITY's dest, what the client fetches
	port         int
}

// serveBelow1024 creates a server on the fleet's node whose SOCKS5 inbound
// listens on a port below 1024, waits until it is applied, and checks that
// a new user, name, passes traffic through that port with a real client.
func (f *fleet) serveBelow1024(name string) lowServer {
	t := f.t
	t.Helper()
	ls := lowServer{dest: xraytest.StartTLSDest(t, sni), target: xraytest.StartHTTPTarget(t), port: lowPort(t)}
	s, err := bus.Request[server.Server](f.ctx(), f.nc, subject.ServersCmd(subject.ServersCreate), server.CreateRequest{
		Node: f.node, Name: "low", Inbounds: inboundRequests(t, ls.dest, map[string]int{"socks": ls.port}),
	})
	if err != nil {
		t.Fatalf("creating a server with socks on port %d: %v", ls.port, err)
	}
	ls.srv = f.waitStatus(s.ID, s.Revision, server.StateApplied)
	u := f.createUser(name)
	link, ok := f.links(u.ID, s.ID)[user.SOCKS5]
	if !ok {
		t.Fatalf("no socks link for %s", name)
	}
	ls.client = xraytest.StartClient(t, xraytest.Binary(t), outbound(t, link))
	connects(t, ls.client, ls.target, fmt.Sprintf("%s over socks on port %d", name, ls.port))
	return ls
}

// lowPort returns a port below 1024 free on loopback a moment ago.
func lowPort(t testing.TB) int {
	t.Helper()
	for p := 1023; p >= 900; p-- {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no free port between 900 and 1023 on loopback")
	return 0
}

// TestRestartWithAnotherXrayUserRedeploys: an Xray adopted from an agent
// that ran it as another user (an upgrade from root, or --xray-user
// changed) is redeployed as the agent now says, and serves again.
func TestRestartWithAnotherXrayUserRedeploys(t *testing.T) {
	f := newFleet(t, "process")
	f.xrayUser = "0:0"
	f.startAgent()
	dest := xraytest.StartTLSDest(t, sni)
	target := xraytest.StartHTTPTarget(t)
	srv := f.createServer("edge", dest)
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	u := f.createUser("bob")
	client := xraytest.StartClient(t, xraytest.Binary(t), outbound(t, f.links(u.ID, srv.ID)[user.SOCKS5]))
	connects(t, client, target, "bob with xray as root")
	f.restartRedeploys(srv, []string{u.ID}, "as root", func() { f.xrayUser = "" }) // the default, 65532:65532
	f.assertUnprivileged(srv.ID)
	connects(t, client, target, "bob with xray unprivileged")
}
