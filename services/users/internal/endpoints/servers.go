package endpoints

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// ServeServers registers the servers micro service on nc: create, get,
// list, update and delete desired servers (request and reply types in
// shared/server). Handlers run under base with timeout each; the caller
// stops the returned service.
func ServeServers(base context.Context, nc *nats.Conn, log *slog.Logger, reg *servers.Registry, timeout time.Duration) (*Service, error) {
	return serve(nc, micro.Config{
		Name:        "servers",
		Version:     Version,
		Description: "desired servers: nodes, inbounds, keys",
		QueueGroup:  subject.ServersQueueGroup,
	}, subject.ServersCmd, []endpoint{
		{subject.ServersCreate, bus.Endpoint(base, log, timeout, reg.Create)},
		{subject.ServersGet, bus.Endpoint(base, log, timeout, reg.Get)},
		{subject.ServersList, bus.Endpoint(base, log, timeout, reg.List)},
		{subject.ServersUpdate, bus.Endpoint(base, log, timeout, reg.Update)},
		{subject.ServersDelete, bus.Endpoint(base, log, timeout, reg.Delete)},
		{subject.ServersRuntimes, bus.Endpoint(base, log, timeout, reg.Runtimes)},
	})
}
