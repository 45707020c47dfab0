package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
)

// TestErrorCodeSurvivesTheWire checks that an error's machine-readable
// code (errs.Error.Code) comes back from bus.Request with its class and
// fields, so a caller answers by code and never by message text.
func TestErrorCodeSurvivesTheWire(t *testing.T) {
	s := natstest.Start(t)
	nc := s.Conn()
	ctx := ctxT(t)
	srv, err := micro.AddService(nc, micro.Config{Name: "coder", Version: "0.0.1", QueueGroup: "coder"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	h := bus.Endpoint(ctx, natstest.Logger(t), time.Second, func(ctx context.Context, r greetReq) (greetResp, error) {
		switch r.Name {
		case "coded":
			return greetResp{}, errs.WithCode(errs.Field("filter", "any wording at all"), errs.CodeFilterMatchesNothing)
		case "wrapped":
			return greetResp{}, errs.Wrap(errs.Invalid, errs.WithCode(errs.Field("line 2: name", "is taken"), errs.CodeInvalidRecords), "checking the file")
		}
		return greetResp{}, errs.Field("name", "must be coded or wrapped")
	})
	if err := srv.AddEndpoint("code", h, micro.WithEndpointSubject("test.code")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, code, field string
	}{
		{"coded", errs.CodeFilterMatchesNothing, "filter"},
		{"wrapped", errs.CodeInvalidRecords, "line 2: name"},
		{"plain", "", "name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := bus.Request[greetResp](ctx, nc, "test.code", greetReq{Name: c.name})
			if !errors.Is(err, errs.Invalid) || errs.CodeOf(err) != c.code {
				t.Fatalf("err %v (code %q), want invalid with code %q", err, errs.CodeOf(err), c.code)
			}
			if fe := errs.FieldsOf(err); len(fe) != 1 || fe[0].Field != c.field {
				t.Fatalf("fields %+v, want %s", fe, c.field)
			}
		})
	}
}

// TestReplyOverMaxPayloadIsAnsweredWithItsCode: a reply larger than the
// server's max_payload (1 MiB, a NATS cluster's default) cannot be sent;
// the caller gets errs.CodeMessageTooLarge at once instead of a timeout
// that reads as "the service is not answering".
func TestReplyOverMaxPayloadIsAnsweredWithItsCode(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{MaxPayload: natstest.DefaultMaxPayload})
	nc := s.Conn()
	ctx := ctxT(t)
	h := bus.Endpoint(ctx, natstest.Logger(t), time.Second, func(ctx context.Context, r greetReq) (greetResp, error) {
		if r.Name == "big" {
			return greetResp{Greeting: strings.Repeat("x", natstest.DefaultMaxPayload)}, nil
		}
		return greetResp{Greeting: "hello " + r.Name}, nil
	})
	svc, err := bus.Serve(nc, micro.Config{Name: "sizer", Version: "0.0.1"}, 4, []bus.ServiceEndpoint{{Name: "greet", Subject: "test.greet", Handler: h}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Stop() }()

	// A long timeout: the answer must come from the service, not from it.
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = bus.Request[greetResp](rctx, nc, "test.greet", greetReq{Name: "big"})
	if !errors.Is(err, errs.Invalid) || errs.CodeOf(err) != errs.CodeMessageTooLarge {
		t.Fatalf("err %v (code %q), want invalid with code %q", err, errs.CodeOf(err), errs.CodeMessageTooLarge)
	}
	if got, err := bus.Request[greetResp](rctx, nc, "test.greet", greetReq{Name: "small"}); err != nil || got.Greeting != "hello small" {
		t.Fatalf("a small reply after a big one: %+v, %v", got, err)
	}
}
