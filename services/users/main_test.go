package users_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/telemetry"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig enforces quickly so transitions show within a test.
func testConfig() users.Config {
	c := users.Defaults()
	c.EnforceInterval = 50 * time.Millisecond
	return c
}

// harness is a real JetStream server with the users core running on it,
// driven over NATS the way the gateway drives it.
type harness struct {
	t   *testing.T
	srv *natstest.Server
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg users.Config
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	srv := natstest.Start(t)
	nc := srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, srv: srv, nc: nc, js: js, cfg: testConfig()}
}

// start runs users.Run on its own connection until the returned stop is
// called (or the test ends) and waits until it answers.
func (h *harness) start() (stop func()) {
	h.t.Helper()
	nc := h.srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	env := svc.Env{NC: nc, JS: js, Log: natstest.Logger(h.t), Metrics: telemetry.NewRegistry(), Probe: probe.New()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- users.Run(ctx, h.cfg, env) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("users.Run returned %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	waitfor.Cond(h.t, 10*time.Second, func() error {
		select {
		case err := <-done:
			h.t.Fatalf("users.Run exited early: %v", err)
		default:
		}
		if _, err := call[user.CountResponse](h, subject.UsersCount, user.Filter{}); err != nil {
			return err
		}
		if _, err := callServers[server.ListResponse](h, subject.ServersList, server.ListRequest{}); err != nil {
			return err
		}
		// The jobs endpoints start a moment after the users ones.
		_, err := callJobs[job.ListResponse](h, subject.JobsList, job.ListRequest{})
		return err
	})
	return stop
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// call sends one request to a users endpoint.
func call[Resp any](h *harness, endpoint string, req any) (Resp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return bus.Request[Resp](ctx, h.nc, subject.UsersCmd(endpoint), req)
}

// callServers sends one request to a servers endpoint.
func callServers[Resp any](h *harness, endpoint string, req any) (Resp, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return bus.Request[Resp](ctx, h.nc, subject.ServersCmd(endpoint), req)
}

// mustServers fails the test on a servers request error.
func mustServers[Resp any](h *harness, endpoint string, req any) Resp {
	h.t.Helper()
	resp, err := callServers[Resp](h, endpoint, req)
	if err != nil {
		h.t.Fatalf("servers %s: %v", endpoint, err)
	}
	return resp
}

// must fails the test on a request error.
func must[Resp any](h *harness, endpoint string, req any) Resp {
	h.t.Helper()
	resp, err := call[Resp](h, endpoint, req)
	if err != nil {
		h.t.Fatalf("%s: %v", endpoint, err)
	}
	return resp
}

func (h *harness) create(name string) user.User {
	h.t.Helper()
	return must[user.User](h, subject.UsersCreate, user.CreateRequest{Name: name})
}

// events returns every event published about user id, in order.
func (h *harness) events(id string) []event.Envelope {
	h.t.Helper()
	return natstest.Events(h.t, h.js, subject.UserEvent(id))
}

// waitEvent waits for an event of typ about id and returns its payload.
func (h *harness) waitEvent(id string, typ event.Type, match func(user.Event) bool) user.Event {
	h.t.Helper()
	var got user.Event
	waitfor.Cond(h.t, 10*time.Second, func() error {
		for _, env := range h.events(id) {
			if env.Type != typ {
				continue
			}
			var e user.Event
			if err := env.Decode(&e); err != nil {
				return err
			}
			if match == nil || match(e) {
				got = e
				return nil
			}
		}
		return errors.New("no " + string(typ) + " event yet")
	})
	return got
}
