package registry

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// Servers returns every server record and the groups of each node that
// runs one. Links are built from these records only.
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
		s.Revision = e.Revision()
		out = append(out, s)
		if _, ok := groups[s.Node]; !ok {
			groups[s.Node] = r.nodeGroups(ctx, s.Node)
		}
	}
	return out, groups, nil
}

// nodeGroups reads the groups of a node from its registration in the nodes
// bucket (only that field; the agent owns the rest). A node that is not
// registered has none.
func (r *Registry) nodeGroups(ctx context.Context, node string) []string {
	e, err := r.nodes.Get(ctx, node)
	if err != nil {
		return nil
	}
	var reg struct {
		Groups []string `json:"groups"`
	}
	if err := json.Unmarshal(e.Value(), &reg); err != nil {
		return nil
	}
	return reg.Groups
}
