package api

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/probe"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// readinessProbeJob is the job id the readiness check asks for: it never
// exists, and a "not found" is an answer.
const readinessProbeJob = "readiness-probe"

// addReadiness makes p's readiness mean what clients of the API need: the
// users and jobs services answer a real request (a user count, served from
// the registry's index; a job read from the jobs bucket). A refusal is an
// answer; no answer, or "unavailable", is not ready.
func addReadiness(p *probe.Probe, nc *nats.Conn) {
	if p == nil || nc == nil {
		return
	}
	p.Add("users service", answers(func(ctx context.Context) error {
		_, err := bus.Request[user.CountResponse](ctx, nc, subject.UsersCmd(subject.UsersCount), user.Filter{})
		return err
	}))
	p.Add("jobs service", answers(func(ctx context.Context) error {
		_, err := bus.Request[job.Job](ctx, nc, subject.JobsCmd(subject.JobsGet), job.IDRequest{ID: readinessProbeJob})
		return err
	}))
}

func answers(request func(context.Context) error) probe.Check {
	return func(ctx context.Context) error {
		err := request(ctx)
		if err == nil || !errors.Is(err, errs.Unavailable) {
			return nil
		}
		return err
	}
}
