package users_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/svc"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestTwoReplicasStartBeforeTheirCluster is the operator's first start of
// a fleet: two vpn-users replicas (svc.Standalone with the users core, as
// the binary runs) start at the same moment against a 3-node NATS cluster
// none of whose nodes is up yet, with --replicas 3. Both wait, retrying;
// once the nodes start, both provision (racing each other), create their
// consumers and serve: a create through the users service succeeds, and
// both replicas answer its micro ping.
func TestTwoReplicasStartBeforeTheirCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster; -short skips it")
	}
	c := natstest.NewCluster(t, 3)
	base := svc.Defaults("")
	base.NATSURL, base.NATSCreds, base.Replicas = c.URLs(), c.ServiceCredsFile(), 3
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	var gate sync.WaitGroup
	gate.Add(1)
	for i := range 2 {
		go func() {
			gate.Wait()
			done <- svc.Standalone(ctx, fmt.Sprintf("vpn-users-%d", i), "test", base, natstest.LogWriter(t),
				func(ctx context.Context, env svc.Env) error { return users.Run(ctx, testConfig(), env) })
		}()
	}
	gate.Done()
	c.StartAll()

	nc := c.Conn()
	var created user.User
	waitfor.Cond(t, 3*time.Minute, func() error {
		select {
		case err := <-done:
			t.Fatalf("a replica stopped: %v", err)
		default:
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		var err error
		created, err = bus.Request[user.User](rctx, nc, subject.UsersCmd(subject.UsersCreate), user.CreateRequest{Name: "first", IdempotencyKey: "first"})
		return err
	})
	if created.Name != "first" {
		t.Fatalf("created %+v", created)
	}
	waitfor.Cond(t, time.Minute, func() error {
		inbox := nc.NewRespInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		if err := nc.PublishRequest(fmt.Sprintf("%s.%s.users", micro.APIPrefix, micro.PingVerb), inbox, nil); err != nil {
			return err
		}
		ids := map[string]bool{}
		for {
			m, err := sub.NextMsg(time.Second)
			if err != nil {
				break
			}
			ids[string(m.Data)] = true
		}
		if len(ids) != 2 {
			return fmt.Errorf("%d users replicas answer the ping, want 2", len(ids))
		}
		return nil
	})
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("replica: %v", err)
		}
	}
}
