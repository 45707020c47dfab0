package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/outbox"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), subject.StreamStats)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestNothingLostWhileNATSIsDown queues messages while the server is down,
// kills the outbox (reopens it from disk, as after an agent crash), brings
// the server back and checks every message arrives exactly once.
func TestNothingLostWhileNATSIsDown(t *testing.T) {
	ns := natstest.Start(t)
	js := ns.JetStream()
	dir := t.TempDir()
	log := natstest.Logger(t)

	ob, err := outbox.Open(dir, 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ob.Run(ctx, js) }()

	add := func(ob *outbox.Outbox, i int) {
		if err := ob.Add(outbox.Msg{Subject: subject.HostStats("n1"), MsgID: fmt.Sprintf("n1:%d", i), Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		add(ob, i)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		if n := streamMsgs(t, js); n != 10 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})

	ns.Shutdown()
	for i := 10; i < 60; i++ {
		add(ob, i)
	}
	cancel()
	<-done
	if ob.Len() != 50 {
		t.Fatalf("%d buffered, want 50", ob.Len())
	}

	// The agent restarts: the queue comes back from disk.
	ob2, err := outbox.Open(dir, 1000, log)
	if err != nil {
		t.Fatal(err)
	}
	if ob2.Len() != 50 {
		t.Fatalf("reopened with %d, want 50", ob2.Len())
	}
	ns.Restart()
	js = ns.JetStream()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- ob2.Run(ctx2, js) }()
	waitfor.Cond(t, 20*time.Second, func() error {
		if ob2.Len() != 0 {
			return fmt.Errorf("%d still buffered", ob2.Len())
		}
		return nil
	})
	if n := streamMsgs(t, js); n != 60 {
		t.Fatalf("%d stored, want exactly 60", n)
	}
	cancel2()
	<-done2
}

func TestFullOutboxDropsOldest(t *testing.T) {
	ob, err := outbox.Open(t.TempDir(), 3, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := ob.Add(outbox.Msg{Subject: "s", MsgID: fmt.Sprint(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if ob.Len() != 3 || ob.Dropped() != 2 {
		t.Fatalf("len %d dropped %d", ob.Len(), ob.Dropped())
	}
	if err := ob.Add(outbox.Msg{Subject: "", MsgID: "x"}); err == nil {
		t.Fatal("want an error for a message without subject")
	}
}
