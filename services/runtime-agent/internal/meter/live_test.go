package meter_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/meter"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestUsageIsLossFreeAcrossOutages pushes known traffic through a real Xray,
// meters it into the real registry through the outbox, cuts NATS mid-way and
// restarts the meter (as a crashed agent would) mid-way too: the user's
// recorded usage ends equal to what Xray counted, to the byte.
func TestUsageIsLossFreeAcrossOutages(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	log := natstest.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The registry, consuming USAGE.
	env := svc.Env{NC: nc, JS: js, Log: log, Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	regDone := make(chan error, 1)
	go func() { regDone <- users.Run(ctx, users.Defaults(), env) }()
	defer func() { cancel(); <-regDone }()
	var u user.User
	waitfor.Cond(t, 20*time.Second, func() error {
		u, err = bus.Request[user.User](ctx, nc, subject.UsersCmd(subject.UsersCreate),
			user.CreateRequest{Name: "metered", Protocols: []user.Protocol{user.SOCKS5}})
		return err
	})

	// A real Xray serving that user on a SOCKS5 inbound.
	in := xray.Inbound{Tag: "socks", Protocol: xray.SOCKS5, Listen: "127.0.0.1", Port: xraytest.FreePort(t),
		Users: []xray.User{{ID: u.ID, Password: u.Credentials.SOCKS5.Password}}}
	spec := xray.Spec{APIListen: "127.0.0.1:" + strconv.Itoa(xraytest.FreePort(t)), AllowPrivateNetworks: true, Inbounds: []xray.Inbound{in}}
	cfg, err := xray.BuildConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	bin := xraytest.Binary(t)
	xraytest.Start(t, bin, cfg, spec.APIListen, net.JoinHostPort(in.Listen, strconv.Itoa(in.Port)))
	api, err := xray.NewClient(spec.APIListen, log)
	if err != nil {
		t.Fatal(err)
	}
	defer api.Close()
	client := xraytest.StartClient(t, bin, xraytest.SOCKS5{User: u.Credentials.SOCKS5.Username, Pass: u.Credentials.SOCKS5.Password, Host: in.Listen, Port: in.Port})
	target := xraytest.StartHTTPTarget(t)

	// The agent side: outbox publishing to NATS, meter feeding it.
	dir := t.TempDir()
	ob, err := outbox.Open(dir+"/outbox", 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	obDone := make(chan error, 1)
	go func() { obDone <- ob.Run(ctx, js) }()
	defer func() { cancel(); <-obDone }()
	m, err := meter.Open(dir+"/meter", "node-a", ob, log)
	if err != nil {
		t.Fatal(err)
	}

	read := func() []meter.Reading {
		traffic, err := api.UserTraffic(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := map[string]meter.Counter{}
		for id, tr := range traffic {
			c[id] = meter.Counter{Up: tr.Uplink, Down: tr.Downlink}
		}
		return []meter.Reading{{Instance: "xray-1", Counters: c}}
	}
	push := func(n int) {
		t.Helper()
		body, err := client.Get(ctx, fmt.Sprintf("%s/bytes?n=%d", target, n))
		if err != nil || len(body) != n {
			t.Fatalf("fetching %d bytes through the tunnel: %d, %v", n, len(body), err)
		}
	}
	// observe records one reading and returns what Xray had counted in it.
	// Xray may count the last bytes of a transfer a moment after the client
	// has them, so expectations come from the readings the meter took.
	observe := func() meter.Counter {
		t.Helper()
		r := read()
		if _, err := m.Observe(r); err != nil {
			t.Fatal(err)
		}
		return r[0].Counters[u.ID]
	}

	push(100_000)
	observe()
	ns.Shutdown() // NATS is cut off: records wait in the outbox
	push(200_000)
	observe()
	push(300_000)
	// The agent dies here and comes back: the meter reopens from disk.
	m, err = meter.Open(dir+"/meter", "node-a", ob, log)
	if err != nil {
		t.Fatal(err)
	}
	observe()
	if ob.Len() == 0 {
		t.Fatal("nothing buffered while NATS was down")
	}
	ns.Restart()
	push(50_000)
	// Observe until a round finds nothing new: then the last reading holds
	// every byte of the transfers above.
	want := observe()
	waitfor.Cond(t, 10*time.Second, func() error {
		if next := observe(); next != want {
			want = next
			return fmt.Errorf("xray still counting")
		}
		return nil
	})
	if want.Down < 650_000 {
		t.Fatalf("xray counted %d bytes down, want at least the 650,000 pushed", want.Down)
	}
	waitfor.Cond(t, 60*time.Second, func() error {
		got, err := bus.Request[user.User](ctx, nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: u.ID})
		if err != nil {
			return err
		}
		if got.Usage.UsedUp != want.Up || got.Usage.UsedDown != want.Down {
			return fmt.Errorf("registry counts up %d down %d, xray counted up %d down %d (%d buffered)",
				got.Usage.UsedUp, got.Usage.UsedDown, want.Up, want.Down, ob.Len())
		}
		return nil
	})
	t.Logf("xray counted up %d, down %d; the registry recorded exactly that", want.Up, want.Down)
}
