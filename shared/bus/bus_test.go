package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type rec struct {
	N    int    `json:"n"`
	Kind string `json:"kind"`
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPublishRetriedWithSameIDIsStoredOnce(t *testing.T) {
	s := natstest.Start(t)
	js := s.JetStream()
	ctx := ctxT(t)
	subj := subject.Usage("node1")

	first, err := bus.Publish(ctx, js, subj, "node1:w1", rec{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := bus.Publish(ctx, js, subj, "node1:w1", rec{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("first=%+v second=%+v: want the retry flagged duplicate with the same sequence", first, second)
	}
	if _, err := bus.Publish(ctx, js, subj, "node1:w2", rec{N: 2}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, subject.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2", info.State.Msgs)
	}
}

func TestPublishEventCarriesTypeHeader(t *testing.T) {
	s := natstest.Start(t)
	js := s.JetStream()
	ctx := ctxT(t)
	env, err := event.New(event.UserCreated, "u1:1", "test", map[string]string{"id": "u1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.PublishEvent(ctx, js, subject.UserEvent("u1"), env); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, subject.StreamEvents)
	m, err := st.GetLastMsgForSubject(ctx, subject.UserEvent("u1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(event.Header); got != string(event.UserCreated) {
		t.Fatalf("type header %q, want %q", got, event.UserCreated)
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bus.Decision
	}{
		{"nil acks", nil, bus.Ack},
		{"invalid terminates", errs.Field("name", "must be set"), bus.Term},
		{"wrapped invalid terminates", errors.Join(errors.New("x"), errs.New(errs.Invalid, "bad")), bus.Term},
		{"unavailable retries", errs.New(errs.Unavailable, "down"), bus.Retry},
		{"conflict retries", errs.New(errs.Conflict, "stale"), bus.Retry},
		{"unclassified retries", errors.New("boom"), bus.Retry},
		{"deadline retries", context.DeadlineExceeded, bus.Retry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bus.Decide(tt.err); got != tt.want {
				t.Fatalf("Decide(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestConsumeAckRetryTerm drives the adapter with three messages: one that
// succeeds, one that fails transiently twice before succeeding, and one that
// cannot be decoded. It checks what the server recorded, not what the
// adapter believes.
func TestConsumeAckRetryTerm(t *testing.T) {
	s := natstest.Start(t)
	js := s.JetStream()
	ctx := ctxT(t)

	cons, err := js.CreateOrUpdateConsumer(ctx, subject.StreamUsage, jetstream.ConsumerConfig{
		Durable:   "test",
		AckPolicy: jetstream.AckExplicitPolicy,
		AckWait:   30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	calls := map[string]int{}
	var metaOK atomic.Bool
	done := make(chan struct{})
	runCtx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		_ = bus.Consume(runCtx, cons, natstest.Logger(t), bus.ConsumeOptions{RetryBase: 10 * time.Millisecond},
			func(ctx context.Context, r rec) error {
				meta, ok := bus.MetaFrom(ctx)
				if ok && meta.MsgID != "" {
					metaOK.Store(true)
				}
				mu.Lock()
				calls[r.Kind]++
				n := calls[r.Kind]
				mu.Unlock()
				if r.Kind == "flaky" && n < 3 {
					return errs.New(errs.Unavailable, "not yet")
				}
				return nil
			})
	}()

	subj := subject.Usage("n1")
	if _, err := bus.Publish(ctx, js, subj, "ok", rec{Kind: "ok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Publish(ctx, js, subj, "flaky", rec{Kind: "flaky"}); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.PublishRaw(ctx, js, &nats.Msg{Subject: subj, Data: []byte("{not json")}, "garbage"); err != nil {
		t.Fatal(err)
	}

	// All three leave the pending set: acked, acked after retries, terminated.
	waitfor.Cond(t, 20*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == 3 {
			return nil
		}
		return fmt.Errorf("consumer not settled: pending %d, ack pending %d, ack floor %d",
			info.NumPending, info.NumAckPending, info.AckFloor.Stream)
	})
	stop()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if calls["ok"] != 1 {
		t.Errorf("ok handled %d times, want 1", calls["ok"])
	}
	if calls["flaky"] != 3 {
		t.Errorf("flaky handled %d times, want 3 (two transient failures, then success)", calls["flaky"])
	}
	if calls[""] != 0 {
		t.Errorf("undecodable message reached the handler %d times", calls[""])
	}
	if !metaOK.Load() {
		t.Error("handler never saw message metadata")
	}
}

type greetReq struct {
	Name string `json:"name"`
}
type greetResp struct {
	Greeting string `json:"greeting"`
}

func TestEndpointAndRequestKeepErrorClass(t *testing.T) {
	s := natstest.Start(t)
	nc := s.Conn()
	ctx := ctxT(t)

	srv, err := micro.AddService(nc, micro.Config{Name: "greeter", Version: "0.0.1", QueueGroup: "greeter"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	h := bus.Endpoint(ctx, natstest.Logger(t), time.Second, func(ctx context.Context, r greetReq) (greetResp, error) {
		switch r.Name {
		case "":
			return greetResp{}, errs.Field("name", "must be set")
		case "ghost":
			return greetResp{}, errs.New(errs.NotFound, "user ghost not found")
		case "bug":
			return greetResp{}, errors.New("secret detail")
		}
		return greetResp{Greeting: "hi " + r.Name}, nil
	})
	if err := srv.AddEndpoint("greet", h, micro.WithEndpointSubject("test.greet")); err != nil {
		t.Fatal(err)
	}

	got, err := bus.Request[greetResp](ctx, nc, "test.greet", greetReq{Name: "ann"})
	if err != nil || got.Greeting != "hi ann" {
		t.Fatalf("got %+v, %v", got, err)
	}

	tests := []struct {
		name      string
		req       any
		class     errs.Class
		wantField string
	}{
		{"invalid keeps fields", greetReq{}, errs.Invalid, "name"},
		{"not found", greetReq{Name: "ghost"}, errs.NotFound, ""},
		{"internal hides detail", greetReq{Name: "bug"}, errs.Internal, ""},
		{"undecodable request", "not an object", errs.Invalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bus.Request[greetResp](ctx, nc, "test.greet", tt.req)
			if !errors.Is(err, tt.class) {
				t.Fatalf("err %v, want class %v", err, tt.class)
			}
			if tt.wantField != "" {
				fe := errs.FieldsOf(err)
				if len(fe) != 1 || fe[0].Field != tt.wantField {
					t.Fatalf("fields %+v, want %s", fe, tt.wantField)
				}
			}
			if tt.class == errs.Internal && errs.Message(err) != "internal error" {
				t.Fatalf("internal detail leaked: %v", err)
			}
		})
	}

	_, err = bus.Request[greetResp](ctx, nc, "test.nobody", greetReq{Name: "x"})
	if !errors.Is(err, errs.Unavailable) {
		t.Fatalf("no responders: err %v, want Unavailable", err)
	}
}
