// Package endpoints serves the user registry as a NATS micro service on
// subject.UsersCmd(endpoint), and the servers registry as another on
// subject.ServersCmd(endpoint), each in its queue group so replicas share
// the load. Handlers are thin: each decodes through bus.Endpoint, calls the
// registry, the index or the links package, and returns its error.
package endpoints

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/links"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Version is the micro service version.
const Version = "1.0.0"

// MaxInFlight bounds the requests one replica handles at once. A micro
// endpoint delivers its requests one after another; handling them on their
// own goroutines lets a replica overlap the KV round trips of many.
const MaxInFlight = 64

// Service is the running micro service.
type Service struct {
	svc   micro.Service
	nc    *nats.Conn
	name  string
	slots chan struct{}

	mu       sync.Mutex // orders inFlight.Add before inFlight.Wait
	stopped  bool
	inFlight sync.WaitGroup
}

// Stats reports the micro service's per-endpoint statistics, for the
// request metrics.
func (s *Service) Stats() micro.Stats { return s.svc.Stats() }

// Stop stops taking requests and waits for those in flight. Requests the
// draining subscription still delivers are refused as Unavailable.
func (s *Service) Stop() error {
	err := s.svc.Stop()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.inFlight.Wait()
	return err
}

// concurrent runs h on its own goroutine per request, at most MaxInFlight
// at once (further requests wait in the subscription).
func (s *Service) concurrent(h micro.Handler) micro.Handler {
	return micro.HandlerFunc(func(r micro.Request) {
		s.slots <- struct{}{}
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			<-s.slots
			_ = r.Error(errs.Code(errs.Unavailable), s.name+" service is stopping", nil)
			return
		}
		s.inFlight.Add(1)
		s.mu.Unlock()
		go func() {
			defer func() { <-s.slots; s.inFlight.Done() }()
			h.Handle(detached{Request: r, nc: s.nc})
		}()
	})
}

// detached is a request answered after its micro handler returned. It
// publishes the reply itself: micro's own Respond and Error record the
// outcome on the request, which micro reads for its stats as soon as the
// handler returns, so answering through them from another goroutine is a
// data race. The price is that micro's stats count these requests' errors
// as successes; logs and the callers see them.
type detached struct {
	micro.Request
	nc *nats.Conn
}

func (d detached) Respond(data []byte, opts ...micro.RespondOpt) error {
	m := &nats.Msg{Subject: d.Reply(), Data: data}
	for _, opt := range opts {
		opt(m)
	}
	if err := d.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("%w: %w", micro.ErrRespond, err)
	}
	return nil
}

func (d detached) RespondJSON(v any, opts ...micro.RespondOpt) error {
	data, err := json.Marshal(v)
	if err != nil {
		return micro.ErrMarshalResponse
	}
	return d.Respond(data, opts...)
}

func (d detached) Error(code, description string, data []byte, opts ...micro.RespondOpt) error {
	h := micro.Headers{micro.ErrorHeader: {description}, micro.ErrorCodeHeader: {code}}
	return d.Respond(data, append(opts, micro.WithHeaders(h))...)
}

// handlers binds the endpoints to the core.
type handlers struct {
	reg *registry.Registry
	idx *index.Index
}

// Serve registers the users micro service on nc. Handlers run under base
// (the service's run context) with timeout each. The caller stops the
// returned service.
func Serve(base context.Context, nc *nats.Conn, log *slog.Logger, reg *registry.Registry, idx *index.Index, timeout time.Duration) (*Service, error) {
	h := handlers{reg: reg, idx: idx}
	return serve(nc, micro.Config{
		Name:        "users",
		Version:     Version,
		Description: "user registry: users, credentials, quotas, links",
		QueueGroup:  subject.UsersQueueGroup,
	}, subject.UsersCmd, []endpoint{
		{subject.UsersCreate, bus.Endpoint(base, log, timeout, h.reg.Create)},
		{subject.UsersGet, bus.Endpoint(base, log, timeout, h.get)},
		{subject.UsersList, bus.Endpoint(base, log, timeout, h.list)},
		{subject.UsersCount, bus.Endpoint(base, log, timeout, h.count)},
		{subject.UsersUpdate, bus.Endpoint(base, log, timeout, h.reg.Update)},
		{subject.UsersDelete, bus.Endpoint(base, log, timeout, h.reg.Delete)},
		{subject.UsersDisable, bus.Endpoint(base, log, timeout, h.disable)},
		{subject.UsersEnable, bus.Endpoint(base, log, timeout, h.enable)},
		{subject.UsersResetTraffic, bus.Endpoint(base, log, timeout, h.reg.ResetTraffic)},
		{subject.UsersRotate, bus.Endpoint(base, log, timeout, h.reg.Rotate)},
		{subject.UsersLinks, bus.Endpoint(base, log, timeout, h.links)},
		{subject.UsersSubscription, bus.Endpoint(base, log, timeout, h.subscription)},
		{subject.UsersQR, bus.Endpoint(base, log, timeout, h.qr)},
	})
}

// endpoint is one named handler of a service.
type endpoint struct {
	name string
	h    micro.Handler
}

// serve adds a micro service with its endpoints, each on cmd(name) and
// handled concurrently.
func serve(nc *nats.Conn, cfg micro.Config, cmd func(string) string, eps []endpoint) (*Service, error) {
	ms, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "adding %s service", cfg.Name)
	}
	svc := &Service{svc: ms, nc: nc, name: cfg.Name, slots: make(chan struct{}, MaxInFlight)}
	for _, ep := range eps {
		if err := ms.AddEndpoint(ep.name, svc.concurrent(ep.h), micro.WithEndpointSubject(cmd(ep.name))); err != nil {
			_ = svc.Stop()
			return nil, errs.Wrap(errs.Unavailable, err, "adding %s endpoint %s", cfg.Name, ep.name)
		}
	}
	return svc, nil
}

func (h handlers) get(ctx context.Context, req user.GetRequest) (user.User, error) {
	switch {
	case req.ID != "":
		return h.reg.Get(ctx, req.ID)
	case req.Name != "":
		return h.reg.GetByName(ctx, req.Name)
	}
	return user.User{}, errs.Field("id", "id or name must be set")
}

func (h handlers) list(_ context.Context, req user.ListRequest) (user.ListResponse, error) {
	return h.idx.List(req)
}

func (h handlers) count(_ context.Context, f user.Filter) (user.CountResponse, error) {
	return user.CountResponse{Count: h.idx.Count(f)}, nil
}

func (h handlers) disable(ctx context.Context, req user.RevisionRequest) (user.User, error) {
	return h.reg.SetEnabled(ctx, req, false)
}

func (h handlers) enable(ctx context.Context, req user.RevisionRequest) (user.User, error) {
	return h.reg.SetEnabled(ctx, req, true)
}

// userLinks returns the links of user id on the servers of healthy nodes.
func (h handlers) userLinks(ctx context.Context, id string, healthy []string) (user.LinksResponse, error) {
	u, err := h.reg.Get(ctx, id)
	if err != nil {
		return user.LinksResponse{}, err
	}
	servers, groups, err := h.reg.Servers(ctx)
	if err != nil {
		return user.LinksResponse{}, err
	}
	ls, missing := links.ForUser(u, servers, groups, links.HealthyOf(healthy))
	return user.LinksResponse{Links: ls, Missing: missing}, nil
}

func (h handlers) links(ctx context.Context, req user.LinksRequest) (user.LinksResponse, error) {
	return h.userLinks(ctx, req.ID, req.HealthyNodes)
}

func (h handlers) subscription(ctx context.Context, req user.SubscriptionRequest) (user.SubscriptionResponse, error) {
	resp, err := h.userLinks(ctx, req.ID, req.HealthyNodes)
	if err != nil {
		return user.SubscriptionResponse{}, err
	}
	body, ct, err := links.Subscription(resp.Links, req.Format)
	if err != nil {
		return user.SubscriptionResponse{}, err
	}
	return user.SubscriptionResponse{ContentType: ct, Body: body, Links: len(resp.Links)}, nil
}

func (h handlers) qr(ctx context.Context, req user.QRRequest) (user.QRResponse, error) {
	content := req.Content
	if content == "" {
		resp, err := h.userLinks(ctx, req.ID, nil)
		if err != nil {
			return user.QRResponse{}, err
		}
		for _, l := range resp.Links {
			if l.Server == req.Server && l.Protocol == req.Protocol {
				content = l.URL
				break
			}
		}
		if content == "" {
			return user.QRResponse{}, errs.New(errs.NotFound, "user %s has no %s link on server %s", req.ID, req.Protocol, req.Server)
		}
	}
	png, text, err := links.QR(content, req.Size)
	if err != nil {
		return user.QRResponse{}, err
	}
	return user.QRResponse{Content: content, PNG: png, Text: text}, nil
}
