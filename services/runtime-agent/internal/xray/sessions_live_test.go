package xray_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// endless is a /stream path that outlasts any test: 4 GiB at 16 MB/s.
const endless = "/stream?n=4294967296&rate=16000000"

// waitDone waits for a download to end, failing after limit.
func waitDone(t testing.TB, d *xraytest.Download, limit time.Duration, what string) {
	t.Helper()
	select {
	case <-d.Done():
	case <-time.After(limit):
		t.Fatalf("%s: still running after %s (%d bytes)", what, limit, d.Received())
	}
}

// waitSessions waits until Xray tracks n sessions of user id.
func waitSessions(t testing.TB, api *xray.Client, id string, n int) {
	t.Helper()
	waitfor.Cond(t, 10*time.Second, func() error {
		got, err := api.Sessions(context.Background())
		if err != nil {
			return err
		}
		if got[id] != n {
			return fmt.Errorf("%d sessions of %s, want %d (all: %v)", got[id], id, n, got)
		}
		return nil
	})
}

// TestCutUsersEndsOnlyTheirSessions is the session extension end to end,
// per protocol, with real clients: a user downloading over one connection
// is removed and cut; the connection ends at once, a second user's
// download on the same inbound runs to its last byte, the cut user cannot
// come back, and Xray counted exactly the bytes the cut client got.
func TestCutUsersEndsOnlyTheirSessions(t *testing.T) {
	s := startServer(t, true)
	bin := xraytest.Binary(t)
	target := xraytest.StartHTTPTarget(t)
	ctx := context.Background()
	if ok, err := s.api.HasSessionControl(ctx); err != nil || !ok {
		t.Fatalf("HasSessionControl = %v, %v; want true from vpn-xray", ok, err)
	}

	for _, tag := range []string{"vless", "ss", "socks", "http"} {
		t.Run(tag, func(t *testing.T) {
			in := s.inbound(tag)
			cut, other := newUser(t, in), newUser(t, in)
			if err := s.api.AddUsers(ctx, in, []xray.User{cut, other}); err != nil {
				t.Fatalf("AddUsers: %v", err)
			}
			cutDial, otherDial := s.dialer(t, bin, in, cut), s.dialer(t, bin, in, other)

			long := xraytest.StartDownload(t, cutDial, target, endless)
			// 12 MB at 8 MB/s: still running when the other user is cut.
			const otherBytes = 12_000_000
			finite := xraytest.StartDownload(t, otherDial, target, fmt.Sprintf("/stream?n=%d&rate=8000000", otherBytes))
			waitfor.Cond(t, 10*time.Second, func() error {
				if long.Received() <= 1<<20 {
					return fmt.Errorf("the download is at %d bytes", long.Received())
				}
				return nil
			})
			waitSessions(t, s.api, cut.ID, 1)

			// Counted while it flows: the counters grow before the
			// connection ends (a spliced copy would count at the end).
			waitTraffic(t, s.api, cut.ID, func(tr xray.Traffic) bool { return tr.Downlink > 1<<20 })

			start := time.Now()
			if err := s.api.RemoveUser(ctx, in, cut.ID); err != nil {
				t.Fatalf("RemoveUser: %v", err)
			}
			closed, err := s.api.CutUsers(ctx, []string{cut.ID})
			if err != nil || closed != 1 {
				t.Fatalf("CutUsers = %d, %v; want 1 session closed", closed, err)
			}
			waitDone(t, long, 10*time.Second, "the cut download")
			t.Logf("%s: cut after %d bytes, connection ended %s after the cut was asked", tag, long.Received(), long.Ended().Sub(start))
			if long.Err() == nil {
				t.Fatal("the cut download completed")
			}
			if select1(finite.Done()) {
				t.Fatalf("the other user's download ended with the cut one: %v", finite.Err())
			}

			// Usage of the cut connection is what went through it: the
			// request up, every byte the client got down.
			want := xray.Traffic{Uplink: int64(len(long.Request)), Downlink: long.Received()}
			got := waitTraffic(t, s.api, cut.ID, func(tr xray.Traffic) bool { return tr.Downlink >= want.Downlink })
			if got != want {
				t.Fatalf("counters of the cut user = %+v, want %+v (what its client sent and received)", got, want)
			}

			// Coming back is refused, every time.
			for range 3 {
				refused(t, cutDial, target, "the cut user reconnecting")
			}
			waitSessions(t, s.api, cut.ID, 0)

			// The other user's download is unharmed to its last byte.
			waitDone(t, finite, 30*time.Second, "the other user's download")
			if err := finite.Err(); err != nil {
				t.Fatalf("the other user's download: %v", err)
			}

			// Cutting a user with no sessions, or an unknown one, is a no-op.
			if closed, err := s.api.CutUsers(ctx, []string{cut.ID, "nobody"}); err != nil || closed != 0 {
				t.Fatalf("CutUsers of users without sessions = %d, %v; want 0, nil", closed, err)
			}
		})
	}
}

// dialer is a client of user u on inbound in: Xray's own client, except
// for Shadowsocks-2022, where Xray's client never passes a server's close
// on to its caller (it waits for the caller to close first), so the test
// could not see a cut: there, sing-shadowsocks' client.
func (s *server) dialer(t testing.TB, bin string, in xray.Inbound, u xray.User) xraytest.DialFunc {
	t.Helper()
	if in.Protocol == xray.Shadowsocks2022 {
		dial, err := xraytest.SS2022Dialer(in.Shadowsocks.Method, in.Shadowsocks.Key+":"+u.Key, net.JoinHostPort(in.Listen, strconv.Itoa(in.Port)))
		if err != nil {
			t.Fatal(err)
		}
		return dial
	}
	return xraytest.StartClient(t, bin, s.outbound(in, u)).DialContext
}

// refused checks that a download through dial fails: at once, or (a
// Shadowsocks-2022 server resists probes by stalling) within a bound.
func refused(t *testing.T, dial xraytest.DialFunc, target, what string) {
	t.Helper()
	d := xraytest.StartDownload(t, dial, target, "/stream?n=1000&rate=0")
	select {
	case <-d.Done():
		if d.Err() == nil {
			t.Fatalf("%s got through", what)
		}
	case <-time.After(3 * time.Second):
		if d.Received() > 0 {
			t.Fatalf("%s got %d bytes", what, d.Received())
		}
		d.Cancel()
	}
}

func select1(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestStockXrayHasNoSessionControl: the agent still drives a stock Xray,
// which cannot end sessions; that is reported with a code, never ignored.
func TestStockXrayHasNoSessionControl(t *testing.T) {
	ins, _ := inbounds(t, xraytest.StartTLSDest(t, sni))
	s := runServerWith(t, xraytest.StockBinary(t), xray.Spec{AllowPrivateNetworks: true, Inbounds: ins})
	ctx := context.Background()
	ok, err := s.api.HasSessionControl(ctx)
	if err != nil || ok {
		t.Fatalf("HasSessionControl = %v, %v; want false from stock xray", ok, err)
	}
	_, err = s.api.CutUsers(ctx, []string{"someone"})
	if errs.CodeOf(err) != errs.CodeUnsupported {
		t.Fatalf("CutUsers on stock xray: %v; want code %s", err, errs.CodeUnsupported)
	}
}
