// Package health turns what agents report into fleet health, history,
// alerts and metrics. This first version is the service's shell: it joins
// NATS, provisions, and serves its ops endpoints; node health, stats
// history and alerting arrive with the health issue.
package health

import (
	"context"

	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// Run runs the health core until ctx ends.
func Run(ctx context.Context, env svc.Env) error {
	<-ctx.Done()
	return nil
}
