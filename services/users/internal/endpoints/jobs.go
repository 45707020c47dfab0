package endpoints

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/vpnfleet/vpnfleet/services/users/internal/jobs"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// ServeJobs registers the jobs micro service on nc, on
// subject.JobsCmd(endpoint) in queue group subject.JobsQueueGroup. A create
// validates the whole input in the request, so it gets createTimeout;
// the others get timeout.
func ServeJobs(base context.Context, nc *nats.Conn, log *slog.Logger, j *jobs.Jobs, timeout, createTimeout time.Duration) (*Service, error) {
	return serve(nc, micro.Config{
		Name:        "jobs",
		Version:     Version,
		Description: "bulk jobs: import, generate, change by filter, rollback",
		QueueGroup:  subject.JobsQueueGroup,
	}, subject.JobsCmd, []endpoint{
		{subject.JobsCreate, bus.Endpoint(base, log, createTimeout, j.Create)},
		{subject.JobsGet, bus.Endpoint(base, log, timeout, j.Get)},
		{subject.JobsList, bus.Endpoint(base, log, timeout, j.List)},
		{subject.JobsCancel, bus.Endpoint(base, log, timeout, j.Cancel)},
		{subject.JobsPause, bus.Endpoint(base, log, timeout, j.Pause)},
		{subject.JobsResume, bus.Endpoint(base, log, timeout, j.Resume)},
		{subject.JobsRollback, bus.Endpoint(base, log, createTimeout, j.Rollback)},
	})
}
