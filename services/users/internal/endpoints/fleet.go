package endpoints

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users/internal/fleet"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// ServeFleet registers the fleet micro service on nc: add, revoke and list
// enrolled nodes, set their groups, and answer join requests on
// subject.AllFleetJoins (request and reply types in shared/node).
func ServeFleet(base context.Context, nc *nats.Conn, log *slog.Logger, f *fleet.Fleet, timeout time.Duration) (*Service, error) {
	// The token id is the last token of the subject the request came on:
	// the join credential may publish on that subject only.
	join := micro.HandlerFunc(func(r micro.Request) {
		tokenID, ok := subject.ParseFleetJoin(r.Subject())
		bus.Endpoint(base, log, timeout, func(ctx context.Context, req node.JoinRequest) (node.JoinResponse, error) {
			if !ok {
				return node.JoinResponse{}, errs.Field("subject", "must name a join token")
			}
			return f.Join(ctx, tokenID, req)
		}).Handle(r)
	})
	eps := []bus.ServiceEndpoint{
		{Name: subject.FleetAdd, Subject: subject.FleetCmd(subject.FleetAdd), Handler: bus.Endpoint(base, log, timeout, f.Add)},
		{Name: subject.FleetRevoke, Subject: subject.FleetCmd(subject.FleetRevoke), Handler: bus.Endpoint(base, log, timeout, f.Revoke)},
		{Name: subject.FleetList, Subject: subject.FleetCmd(subject.FleetList), Handler: bus.Endpoint(base, log, timeout, f.List)},
		{Name: subject.FleetGroups, Subject: subject.FleetCmd(subject.FleetGroups), Handler: bus.Endpoint(base, log, timeout, f.SetGroups)},
		{Name: subject.FleetRuntime, Subject: subject.FleetCmd(subject.FleetRuntime), Handler: bus.Endpoint(base, log, timeout, f.SetRuntime)},
		{Name: "join", Subject: subject.AllFleetJoins, Handler: join},
	}
	return bus.Serve(nc, micro.Config{
		Name:        "fleet",
		Version:     Version,
		Description: "node enrollment, join and revocation",
		QueueGroup:  subject.FleetQueueGroup,
	}, MaxInFlight, eps)
}
