package agent_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkCutLatency: 100 users per protocol each hold one download open
// through the agent's vpn-xray; each in turn is disabled through the
// registry, and the time from the disable request to its client seeing
// the connection end is measured (registry, node view, agent, Xray API,
// the close reaching the client). Reported per protocol as p50/p99.
//
//	make bench BENCH=BenchmarkCutLatency
func BenchmarkCutLatency(b *testing.B) {
	const perProtocol = 100
	for range b.N {
		f := newFleet(b, "process")
		f.startAgent()
		srv := f.createServer("cut", xraytest.StartTLSDest(b, sni))
		f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
		target := xraytest.StartHTTPTarget(b)

		users := map[user.Protocol][]user.User{}
		var ids []string
		for _, p := range protocols {
			for i := range perProtocol {
				u := f.createUser(fmt.Sprintf("cut-%s-%03d", shortProto(p), i))
				users[p] = append(users[p], u)
				ids = append(ids, u.ID)
			}
		}
		f.waitXrayHas(srv, ids...)

		for _, p := range protocols {
			dials := f.dialersFor(users[p], srv, p)
			var dls []*xraytest.Download
			for _, dial := range dials {
				dls = append(dls, xraytest.StartDownload(b, dial, target, "/stream?n=4294967296&rate=50000"))
			}
			waitfor.Cond(b, 60*time.Second, func() error {
				for i, d := range dls {
					if d.Received() < 10_000 {
						return fmt.Errorf("download %d at %d bytes", i, d.Received())
					}
				}
				return nil
			})
			rs, err := f.running(srv.ID)
			if err != nil {
				b.Fatal(err)
			}
			sessions, err := rs.Client.Sessions(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			for i, u := range users[p] {
				if sessions[u.ID] != 1 {
					b.Fatalf("%s: user %d has %d sessions tracked before any cut (%d users tracked)", p, i, sessions[u.ID], len(sessions))
				}
			}
			var took []time.Duration
			for i, u := range users[p] {
				since := time.Now()
				at := dls[i].Received()
				f.userCmd(subject.UsersDisable, u.ID)
				select {
				case <-dls[i].Done():
				case <-time.After(30 * time.Second):
					var sessions map[string]int
					rs, err := f.running(srv.ID)
					if err == nil {
						sessions, err = rs.Client.Sessions(context.Background())
					}
					held, _ := f.inboundUsers(srv)
					inXray := 0
					for _, ids := range held {
						if slices.Contains(ids, u.ID) {
							inXray++
						}
					}
					var multi []string
					for id, n := range sessions {
						if n != 1 {
							multi = append(multi, fmt.Sprintf("%s:%d", id, n))
						}
					}
					b.Fatalf("%s: user %d's connection still runs 30s after it was disabled; xray tracks %d sessions of it (%v), %d users in all, not 1: %v; %d inbounds still hold it; %d bytes received then, %d now",
						p, i, sessions[u.ID], err, len(sessions), multi, inXray, at, dls[i].Received())
				}
				took = append(took, dls[i].Ended().Sub(since))
			}
			slices.Sort(took)
			p50, p99 := took[len(took)/2], took[len(took)*99/100]
			b.Logf("%s: cut latency over %d users: p50 %s, p99 %s, max %s", p, len(took), p50, p99, took[len(took)-1])
			b.ReportMetric(float64(p50.Microseconds())/1000, shortProto(p)+"-p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, shortProto(p)+"-p99-ms")
		}
	}
}

// BenchmarkQuotaOvershoot: a user with a 10 MB quota downloads at 100
// Mbit/s over one VLESS connection; the bytes that got through past the
// quota before the connection was cut are measured for several usage
// intervals (the agent's --usage-interval; 10s is the default). The bound
// is the interval times the rate, plus propagation.
//
//	make bench BENCH=BenchmarkQuotaOvershoot
func BenchmarkQuotaOvershoot(b *testing.B) {
	const quota, rate = 10_000_000, 12_500_000 // bytes, bytes per second
	for _, every := range []time.Duration{time.Second, 10 * time.Second} {
		b.Run(every.String(), func(b *testing.B) {
			for range b.N {
				f := newFleet(b, "process")
				f.usage = every
				f.startAgent()
				srv := f.createServer("quota", xraytest.StartTLSDest(b, sni))
				f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
				target := xraytest.StartHTTPTarget(b)
				u := f.createUserWith(user.CreateRequest{Name: "metered", TrafficLimitBytes: quota})
				f.waitXrayHas(srv, u.ID)
				dial := f.dialersFor([]user.User{u}, srv, user.VLESSReality)[0]
				d := xraytest.StartDownload(b, dial, target, "/stream?n=4294967296&rate="+strconv.Itoa(rate))
				select {
				case <-d.Done():
				case <-time.After(every + time.Minute):
					b.Fatal("the download still runs a minute past the usage interval")
				}
				used := d.Received() + int64(len(d.Request))
				over := used - quota
				b.Logf("usage interval %s: %d bytes through, %d (%.1f MB, %.0f%%) past the quota", every, used, over, float64(over)/1e6, 100*float64(over)/quota)
				b.ReportMetric(float64(over)/1e6, "MB-over-quota")
			}
		})
	}
}

// dialersFor returns a real client per user on protocol p of srv, from
// the links the registry hands out: one Xray client process for all of
// them, except for Shadowsocks-2022, where Xray's client never passes the
// server's closing of a connection on to its caller (so a cut could not
// be seen): sing-shadowsocks' client in this process there.
func (f *fleet) dialersFor(us []user.User, srv server.Server, p user.Protocol) []xraytest.DialFunc {
	f.t.Helper()
	var obs []xraytest.Outbound
	for _, u := range us {
		link, ok := f.links(u.ID, srv.ID)[p]
		if !ok {
			f.t.Fatalf("user %s has no %s link", u.Name, p)
		}
		obs = append(obs, outbound(f.t, link))
	}
	out := make([]xraytest.DialFunc, len(obs))
	if p == user.Shadowsocks2022 {
		for i, ob := range obs {
			ss := ob.(xraytest.Shadowsocks2022)
			dial, err := xraytest.SS2022Dialer(ss.Method, ss.Password, net.JoinHostPort(ss.Host, strconv.Itoa(ss.Port)))
			if err != nil {
				f.t.Fatal(err)
			}
			out[i] = dial
		}
		return out
	}
	for i, c := range xraytest.StartClients(f.t, xraytest.Binary(f.t), obs) {
		out[i] = c.DialContext
	}
	return out
}

func shortProto(p user.Protocol) string {
	switch p {
	case user.VLESSReality:
		return "vless"
	case user.Shadowsocks2022:
		return "ss"
	case user.SOCKS5:
		return "socks"
	}
	return string(p)
}
