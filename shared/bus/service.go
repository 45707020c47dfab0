package bus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/trace"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// errorBody is the JSON body of an error reply; it carries what the micro
// error headers cannot: the class name, the code and the field errors.
type errorBody struct {
	Class   string            `json:"class"`
	Code    string            `json:"code,omitempty"`
	Message string            `json:"message"`
	Fields  []errs.FieldError `json:"fields,omitempty"`
}

// Endpoint adapts a typed handler to a micro endpoint. The request body is
// decoded from JSON into Req (an empty body decodes as the zero Req); a
// decoding failure is Invalid. The handler runs under base (normally the
// service's run context) with the caller's trace context and the timeout.
// Errors are replied with the micro error headers (code from errs.Code) and
// a JSON body carrying the class and the field errors; Internal errors are
// logged here, once, and reported without their detail.
func Endpoint[Req, Resp any](base context.Context, log *slog.Logger, timeout time.Duration, h func(context.Context, Req) (Resp, error)) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		var req Req
		var resp Resp
		var err error
		if data := r.Data(); len(data) > 0 {
			if derr := json.Unmarshal(data, &req); derr != nil {
				err = errs.Wrap(errs.Invalid, derr, "decoding request")
			}
		}
		if err == nil {
			ctx, span := startSpan(Extract(base, nats.Header(r.Headers())), trace.SpanKindServer, "process", r.Subject())
			ctx, cancel := context.WithTimeout(ctx, timeout)
			resp, err = h(ctx, req)
			cancel()
			endSpan(span, err)
		}
		if err != nil {
			respondError(r, log, err)
			return
		}
		respond(r, log, resp)
	})
}

// respond replies resp as JSON. A reply over the connection's max_payload
// (a NATS cluster's default is 1 MiB) would never be sent, so the caller
// is told so with errs.CodeMessageTooLarge instead of waiting out its
// timeout. Requests handled by a Service know their connection's limit.
func respond(r micro.Request, log *slog.Logger, resp any) {
	data, err := json.Marshal(resp)
	if err != nil {
		respondError(r, log, errs.Wrap(errs.Internal, err, "encoding the reply"))
		return
	}
	if l, ok := r.(interface{ maxPayload() int64 }); ok && int64(len(data)) > l.maxPayload() {
		respondError(r, log, errs.WithCode(errs.New(errs.Invalid,
			"the reply of %d bytes is over the bus's max_payload of %d bytes: ask for less (a smaller page)", len(data), l.maxPayload()),
			errs.CodeMessageTooLarge))
		return
	}
	if rerr := r.Respond(data); rerr != nil {
		log.Warn("responding", logkey.Subject, r.Subject(), logkey.Err, rerr)
	}
}

func respondError(r micro.Request, log *slog.Logger, err error) {
	class := errs.ClassOf(err)
	body := errorBody{Class: class.String(), Code: errs.CodeOf(err), Message: errs.Message(err), Fields: errs.FieldsOf(err)}
	if class == errs.Internal {
		log.Error("handling request", logkey.Subject, r.Subject(), logkey.Err, err)
		body.Message = "internal error"
	}
	data, _ := json.Marshal(body)
	if rerr := r.Error(errs.Code(class), body.Message, data); rerr != nil {
		log.Warn("responding", logkey.Subject, r.Subject(), logkey.Err, rerr)
	}
}

// Request sends req as JSON to subj and decodes the reply into Resp. A
// remote error comes back as an *errs.Error with its original class and
// field errors; no responders or a timeout is Unavailable, naming the
// subject so the caller can say which service is not answering.
func Request[Resp any](ctx context.Context, nc *nats.Conn, subj string, req any) (resp Resp, err error) {
	ctx, span := startSpan(ctx, trace.SpanKindClient, "request", subj)
	defer func() { endSpan(span, err) }()
	data, err := json.Marshal(req)
	if err != nil {
		return resp, errs.Wrap(errs.Internal, err, "encoding request to %s", subj)
	}
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
	Inject(ctx, m.Header)
	reply, err := nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrConnectionClosed) {
			return resp, errs.Wrap(errs.Unavailable, err, "no answer on %s", subj)
		}
		return resp, errs.Wrap(errs.Unavailable, err, "requesting %s", subj)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		var body errorBody
		_ = json.Unmarshal(reply.Data, &body)
		class := errs.FromCode(code)
		if body.Class != "" {
			class = errs.ParseClass(body.Class)
		}
		msg := body.Message
		if msg == "" {
			msg = reply.Header.Get(micro.ErrorHeader)
		}
		return resp, &errs.Error{Class: class, Code: body.Code, Msg: msg, Fields: body.Fields}
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return resp, errs.Wrap(errs.Internal, err, "decoding reply from %s", subj)
	}
	return resp, nil
}
