package views_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/internal/views"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

type fixture struct {
	t                                  *testing.T
	ctx                                context.Context
	users, servers, enrolls, nodeViews jetstream.KeyValue
}

func newFixture(t *testing.T) *fixture {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	js := natstest.Start(t).JetStream()
	f := &fixture{t: t, ctx: ctx}
	for b, kv := range map[string]*jetstream.KeyValue{
		subject.BucketUsers: &f.users, subject.BucketServers: &f.servers,
		subject.BucketEnrollments: &f.enrolls, subject.BucketNodeViews: &f.nodeViews,
	} {
		h, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		*kv = h
	}
	m := views.New(js, natstest.Logger(t))
	done := make(chan error, 1)
	mctx, stop := context.WithCancel(ctx)
	go func() { done <- m.Run(mctx) }()
	t.Cleanup(func() { stop(); <-done })
	return f
}

func (f *fixture) put(kv jetstream.KeyValue, key string, v any) {
	f.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := kv.Put(f.ctx, key, data); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) user(id string, st user.Status, p user.Placement) user.User {
	u := user.User{ID: id, Name: "u-" + id, Status: st, Protocols: []user.Protocol{user.SOCKS5}, Placement: p,
		Credentials: user.Credentials{SOCKS5: &user.Proxy{Username: id, Password: "secret-" + id}}}
	f.put(f.users, id, u)
	return u
}

// keys waits until the views bucket holds exactly want.
func (f *fixture) keys(want ...string) {
	f.t.Helper()
	slices.Sort(want)
	waitfor.Cond(f.t, time.Minute, func() error {
		l, err := f.nodeViews.ListKeys(f.ctx)
		if err != nil {
			return err
		}
		var got []string
		for k := range l.Keys() {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("views hold %v, want %v", got, want)
		}
		return nil
	})
}

// TestViewsFollowPlacementGroupsAndRevocation: each node's view holds the
// served users placed on it (by node, by group, or all) and its servers,
// and follows every change of placement, status, groups and enrollment.
func TestViewsFollowPlacementGroupsAndRevocation(t *testing.T) {
	f := newFixture(t)
	f.put(f.enrolls, "n1", node.Enrollment{ID: "n1", Groups: []string{"eu"}, State: node.EnrollJoined})
	f.put(f.enrolls, "n2", node.Enrollment{ID: "n2", Groups: []string{"us"}, State: node.EnrollJoined})
	eu := f.user("a", user.StatusActive, user.Placement{Groups: []string{"eu"}})
	f.user("b", user.StatusActive, user.Placement{All: true})
	f.user("c", user.StatusDisabled, user.Placement{All: true})
	f.user("d", user.StatusActive, user.Placement{Nodes: []string{"n2"}})
	f.put(f.servers, "s1", server.Server{ID: "s1", Node: "n1", Name: "edge", Engine: server.EngineXray,
		Inbounds: []server.Inbound{{Tag: "socks", Protocol: user.SOCKS5, Port: 1080}}, Status: server.Status{State: server.StateApplied}})
	f.keys("n1.u.a", "n1.u.b", "n2.u.b", "n2.u.d", "n1.s.s1")

	// What a node reads: the user's credentials and nothing else of it;
	// the server without any status.
	e, err := f.nodeViews.Get(f.ctx, "n1.u.a")
	if err != nil {
		t.Fatal(err)
	}
	var got user.User
	if err := json.Unmarshal(e.Value(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Credentials.SOCKS5 == nil || got.Credentials.SOCKS5.Password != eu.Credentials.SOCKS5.Password || got.Name != "" || got.Placement.Groups != nil {
		t.Fatalf("view of a user: %s", e.Value())
	}
	e, err = f.nodeViews.Get(f.ctx, "n1.s.s1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), `"status"`) {
		t.Fatalf("view of a server carries a status: %s", e.Value())
	}

	// Placement, status and groups move users between views.
	f.user("a", user.StatusActive, user.Placement{All: true})
	f.user("c", user.StatusActive, user.Placement{All: true})
	f.keys("n1.u.a", "n2.u.a", "n1.u.b", "n2.u.b", "n1.u.c", "n2.u.c", "n2.u.d", "n1.s.s1")
	f.user("a", user.StatusActive, user.Placement{Groups: []string{"eu"}})
	f.put(f.enrolls, "n2", node.Enrollment{ID: "n2", Groups: []string{"eu"}, State: node.EnrollJoined})
	f.keys("n1.u.a", "n2.u.a", "n1.u.b", "n2.u.b", "n1.u.c", "n2.u.c", "n2.u.d", "n1.s.s1")

	// A deleted user leaves every view; a revoked node loses its view.
	if err := f.users.Delete(f.ctx, "b"); err != nil {
		t.Fatal(err)
	}
	f.put(f.enrolls, "n2", node.Enrollment{ID: "n2", Groups: []string{"eu"}, State: node.EnrollRevoked})
	f.keys("n1.u.a", "n1.u.c", "n1.s.s1")
	if err := f.servers.Delete(f.ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	f.keys("n1.u.a", "n1.u.c")

	// A stray key (a lagging replica, a hand edit) is put right.
	f.put(f.nodeViews, "n1.u.zzz", user.User{ID: "zzz"})
	f.keys("n1.u.a", "n1.u.c")
}
