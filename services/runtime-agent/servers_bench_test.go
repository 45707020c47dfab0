package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/procstat"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// BenchmarkPropagation measures, per user, the time from the registry
// accepting a create (the reply to vpn.users.create) to the first
// successful fetch through the server as that user: registry write, the
// agent's watch, the live apply, the first connection. The client is Go's
// own SOCKS5 / HTTP proxy client, polling from the moment the create
// returns. Each iteration creates -users users (default 100) on an agent
// with the process runtime.
func BenchmarkPropagation(b *testing.B) {
	for _, p := range []user.Protocol{user.SOCKS5, user.HTTP} {
		b.Run(string(p), func(b *testing.B) {
			f := newFleet(b, "process")
			f.startAgent()
			target := xraytest.StartHTTPTarget(b)
			srv := f.createServer("bench", xraytest.StartTLSDest(b, sni))
			f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
			port := 0
			for _, in := range srv.Inbounds {
				if in.Protocol == p {
					port = in.Port
				}
			}
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				for j := range 100 {
					u, err := bus.Request[user.User](context.Background(), f.nc, subject.UsersCmd(subject.UsersCreate),
						user.CreateRequest{Name: fmt.Sprintf("p%d-%d", i, j), Protocols: []user.Protocol{p}})
					if err != nil {
						b.Fatal(err)
					}
					accepted := time.Now()
					acct := u.Credentials.SOCKS5
					if p == user.HTTP {
						acct = u.Credentials.HTTP
					}
					for deadline := accepted.Add(time.Minute); ; {
						if fetchAs(p, port, acct, target) == nil {
							break
						}
						if time.Now().After(deadline) {
							b.Fatalf("user %s never connected", u.ID)
						}
						time.Sleep(200 * time.Microsecond) // polling, not synchronising
					}
					lat = append(lat, time.Since(accepted))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(ms(lat[len(lat)/2]), "ms-p50")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "ms-p99")
			b.ReportMetric(float64(len(lat)), "users")
		})
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// fetchAs fetches target through the proxy inbound on port as acct, over a
// new connection.
func fetchAs(p user.Protocol, port int, acct *user.Proxy, target string) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tr := &http.Transport{DisableKeepAlives: true}
	if p == user.SOCKS5 {
		d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: acct.Username, Password: acct.Password}, &net.Dialer{Timeout: time.Second})
		if err != nil {
			return err
		}
		tr.DialContext = d.(proxy.ContextDialer).DialContext
	} else {
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr, User: url.UserPassword(acct.Username, acct.Password)})
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// BenchmarkAgent10kUsers runs the real vpn-agent binary (process runtime,
// with its node's credential) in a fleet of 10,000 users, then puts a
// server with one inbound of each protocol on its node, and measures the
// time until every inbound of the new Xray holds the users placed on the
// node (deploy included), then the agent's and Xray's resident memory once
// it idles. "here": all 10,000 users are placed on the node; "elsewhere":
// none is (they are on another node), so the node's view is empty.
func BenchmarkAgent10kUsers(b *testing.B) {
	for _, tc := range []struct {
		name string
		here bool
	}{{"here", true}, {"elsewhere", false}} {
		b.Run(tc.name, func(b *testing.B) { benchAgentFleetUsers(b, 10_000, tc.here) })
	}
}

func benchAgentFleetUsers(b *testing.B, n int, here bool) {
	bin := filepath.Join(b.TempDir(), "vpn-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/vpnfleet/vpnfleet/services/runtime-agent/cmd/vpn-agent").CombinedOutput(); err != nil {
		b.Fatalf("building vpn-agent: %v\n%s", err, out)
	}
	var applyTotal, agentRSS, xrayRSS float64
	for i := range b.N {
		f := newFleet(b, "process")
		f.node = fmt.Sprintf("big%d-%d", i, time.Now().UnixNano()%1e6)
		ctx := context.Background()
		enrolls, err := f.js.KeyValue(ctx, subject.BucketEnrollments)
		if err != nil {
			b.Fatal(err)
		}
		en, _ := json.Marshal(node.Enrollment{ID: f.node, State: node.EnrollJoined})
		if _, err := enrolls.Put(ctx, f.node, en); err != nil {
			b.Fatal(err)
		}
		users, err := f.js.KeyValue(ctx, subject.BucketUsers)
		if err != nil {
			b.Fatal(err)
		}
		for k := range n {
			u := benchUser(b, k)
			if !here {
				u.Placement = user.Placement{Nodes: []string{"elsewhere"}}
			}
			data, _ := json.Marshal(u)
			if _, err := users.Put(ctx, u.ID, data); err != nil {
				b.Fatal(err)
			}
		}
		want := 0
		if here {
			want = n
		}
		f.waitView(want)
		cmd := exec.Command(bin, "--nats-url", f.ns.URL(), "--nats-creds", natstest.CredsFile(b, f.ns.NodeCredential(b, f.node)),
			"--data-dir", f.dataDir, "--node-id", f.node,
			"--runtime", "process", "--xray-bin", f.xrayBin, "--public-addr", "127.0.0.1", "--ops-addr", "")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		srv := f.testServer("big", xraytest.StartTLSDest(b, sni))
		start := time.Now()
		f.putServer(srv)
		f.waitStatus(srv.ID, 0, server.StateApplied)
		var client *xray.Client
		waitfor.Cond(b, 5*time.Minute, func() error {
			if client == nil {
				data, err := os.ReadFile(filepath.Join(f.dataDir, "xray", srv.ID, "deployed.json"))
				if err != nil {
					return err
				}
				var dep struct {
					Spec xray.Spec `json:"spec"`
				}
				if err := json.Unmarshal(data, &dep); err != nil {
					return err
				}
				if client, err = xray.NewClient(dep.Spec.APIListen, natstest.Logger(b)); err != nil {
					return err
				}
			}
			for _, in := range srv.Inbounds {
				ids, err := client.InboundUsers(ctx, xray.Inbound{Tag: in.Tag, Protocol: xray.Protocol(in.Protocol)})
				if err != nil {
					return err
				}
				if len(ids) != want {
					return fmt.Errorf("%s holds %d users, want %d", in.Tag, len(ids), want)
				}
			}
			return nil
		})
		applyTotal += time.Since(start).Seconds()
		time.Sleep(2 * time.Second) // idling is what is measured
		rss, err := procstat.RSSBytes(cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		agentRSS += float64(rss) / (1 << 20)
		st, err := os.ReadFile(filepath.Join(f.dataDir, "process", "process-"+f.node+".json"))
		if err == nil {
			xrayRSS += xrayRSSOf(b, st) / (1 << 20)
		}
		_ = client.Close()
	}
	b.ReportMetric(applyTotal/float64(b.N), "s-apply")
	b.ReportMetric(agentRSS/float64(b.N), "MB-agent-rss")
	b.ReportMetric(xrayRSS/float64(b.N), "MB-xray-rss")
}

// waitView waits until the node's view holds n users.
func (f *fleet) waitView(n int) {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketNodeViews)
	if err != nil {
		f.t.Fatal(err)
	}
	waitfor.Cond(f.t, 5*time.Minute, func() error {
		got := 0
		if l, err := kv.ListKeysFiltered(f.ctx(), subject.NodeView(f.node)); err == nil {
			for range l.Keys() {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("view of %s holds %d keys, want %d", f.node, got, n)
		}
		return nil
	})
}

// xrayRSSOf reads the pid of the workload in a process runtime state file
// (a JSON array of records) and returns its resident memory.
func xrayRSSOf(b *testing.B, state []byte) float64 {
	var recs []struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal(state, &recs); err != nil {
		b.Fatalf("decoding process state: %v", err)
	}
	for _, r := range recs {
		if rss, err := procstat.RSSBytes(r.PID); err == nil && r.PID > 0 {
			return float64(rss)
		}
	}
	return 0
}

// benchUser is an active user on every node with fresh credentials.
func benchUser(b testing.TB, i int) user.User {
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		b.Fatal(err)
	}
	id := newID(b)
	now := time.Now().UTC()
	return user.User{
		ID: id, Name: fmt.Sprintf("u%05d", i), Status: user.StatusActive, Protocols: user.Protocols,
		Credentials: user.Credentials{
			VLESS:       &user.VLESS{UUID: newID(b), Flow: user.FlowVision},
			Shadowsocks: &user.Shadowsocks{Method: user.SS2022AES128GCM, Key: base64.StdEncoding.EncodeToString(key)},
			SOCKS5:      &user.Proxy{Username: id, Password: base64.RawURLEncoding.EncodeToString(key)},
			HTTP:        &user.Proxy{Username: id, Password: base64.RawURLEncoding.EncodeToString(key[:12])},
		},
		LimitReset: user.ResetNone, Placement: user.Placement{All: true}, CreatedAt: now, UpdatedAt: now,
	}
}
