package registry

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// Servers returns every server record, with its node's report, and the
// groups of each node that runs one. Links are built from these records
// only. Servers of a revoked node are left out: it no longer receives
// desired state, so nothing it serves can be trusted to be current.
func (r *Registry) Servers(ctx context.Context) ([]server.Server, map[string][]string, error) {
	lister, err := r.servers.ListKeys(ctx)
	if err != nil {
		return nil, nil, errs.Wrap(errs.Unavailable, err, "listing servers")
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	var out []server.Server
	groups := map[string][]string{}
	for _, k := range keys {
		e, err := r.servers.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, errs.Wrap(errs.Unavailable, err, "reading server %s", k)
		}
		var s server.Server
		if err := json.Unmarshal(e.Value(), &s); err != nil {
			r.log.Error("decoding server", logkey.Server, k, logkey.Err, err)
			continue
		}
		if _, ok := groups[s.Node]; !ok {
			en, revoked := r.enrollment(ctx, s.Node)
			if revoked {
				continue
			}
			groups[s.Node] = en.Groups
		}
		s.Revision = e.Revision()
		s.Status = servers.ReadStatus(ctx, r.status, s)
		out = append(out, s)
	}
	return out, groups, nil
}

// NodeGroups reads the groups of a node from its enrollment (set by the
// operator; never from what the agent says of itself). A node that is not
// enrolled, or revoked, has none; so has the empty node. It is the one
// place node groups are resolved: listing, counting, job filters and
// links all ask it.
func (r *Registry) NodeGroups(ctx context.Context, id string) []string {
	en, revoked := r.enrollment(ctx, id)
	if revoked {
		return nil
	}
	return en.Groups
}

// enrollment reads a node's enrollment (zero when it has none) and whether
// it is revoked.
func (r *Registry) enrollment(ctx context.Context, id string) (node.Enrollment, bool) {
	if id == "" {
		return node.Enrollment{}, false
	}
	e, err := r.enrolls.Get(ctx, id)
	if err != nil {
		return node.Enrollment{}, false
	}
	var en node.Enrollment
	if err := json.Unmarshal(e.Value(), &en); err != nil {
		return node.Enrollment{}, false
	}
	return en, !en.Active()
}
