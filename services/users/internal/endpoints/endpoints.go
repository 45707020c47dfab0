// Package endpoints serves the user registry as a NATS micro service on
// subject.UsersCmd(endpoint), and the servers registry as another on
// subject.ServersCmd(endpoint), each in its queue group so replicas share
// the load. Handlers are thin: each decodes through bus.Endpoint, calls the
// registry, the index or the links package, and returns its error.
package endpoints

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/links"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Version is the micro service version.
const Version = "1.0.0"

// MaxInFlight bounds the requests one replica handles at once. A micro
// endpoint delivers its requests one after another; handling them on their
// own goroutines lets a replica overlap the KV round trips of many.
const MaxInFlight = 64

// Service is a running micro service. Its requests are handled
// concurrently, and its statistics (the request metrics) are measured
// around that handling, not around micro's handler.
type Service = bus.Service

// handlers binds the endpoints to the core.
type handlers struct {
	reg *registry.Registry
	idx *index.Index
	// pageBytes bounds a page of users: the connection's max_payload less
	// room for the reply's envelope, so a page always fits in one reply.
	pageBytes int
}

// replyEnvelope is what a list reply carries besides its users: the
// brackets and the next cursor.
const replyEnvelope = 4 << 10

// Serve registers the users micro service on nc. Handlers run under base
// (the service's run context) with timeout each. The caller stops the
// returned service.
func Serve(base context.Context, nc *nats.Conn, log *slog.Logger, reg *registry.Registry, idx *index.Index, timeout time.Duration) (*Service, error) {
	h := handlers{reg: reg, idx: idx, pageBytes: int(nc.MaxPayload()) - replyEnvelope}
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
// handled concurrently, at most MaxInFlight requests at once.
func serve(nc *nats.Conn, cfg micro.Config, cmd func(string) string, eps []endpoint) (*Service, error) {
	out := make([]bus.ServiceEndpoint, 0, len(eps))
	for _, ep := range eps {
		out = append(out, bus.ServiceEndpoint{Name: ep.name, Subject: cmd(ep.name), Handler: ep.h})
	}
	return bus.Serve(nc, cfg, MaxInFlight, out)
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

// list and count resolve a node filter to that node's groups here, in the
// service that owns placement, as the job planner does.
// A page holds at most req.Limit users and at most what fits in one reply
// (a cluster's default max_payload is 1 MiB, and 1,000 users with long
// notes weigh more): a page cut short has a next cursor like a full one.
func (h handlers) list(ctx context.Context, req user.ListRequest) (index.EncodedPage, error) {
	req.NodeGroups = h.reg.NodeGroups(ctx, req.Node)
	return h.idx.ListEncoded(req, h.pageBytes)
}

func (h handlers) count(ctx context.Context, f user.Filter) (user.CountResponse, error) {
	f.NodeGroups = h.reg.NodeGroups(ctx, f.Node)
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
	ls := resp.Links
	if req.Format == user.FormatOutline {
		// A dynamic access key is one Outline server: no Outline link
		// is no body, which the gateway answers as it answers no links.
		ls = slices.DeleteFunc(ls, func(l user.Link) bool { return l.Protocol != protocol.Outline })
		if len(ls) == 0 {
			return user.SubscriptionResponse{ContentType: links.ContentTypeOutline}, nil
		}
	}
	body, ct, err := links.Subscription(ls, req.Format)
	if err != nil {
		return user.SubscriptionResponse{}, err
	}
	return user.SubscriptionResponse{ContentType: ct, Body: body, Links: len(ls)}, nil
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
