package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// SetRuntime makes req.Runtime the runtime new servers on req.Node start
// on (`vpn runtime switch`), kept in the node's enrollment, which this
// package alone writes. Servers that run stay where they run: the
// registry names the default in each server it creates, and servers that
// name none keep their runtime. The node must be enrolled and its agent
// must have reported the runtime among its own.
func (f *Fleet) SetRuntime(ctx context.Context, req node.RuntimeRequest) (node.Enrollment, error) {
	var fe []errs.FieldError
	if !subject.ValidToken(req.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: nodeRule})
	}
	if !slices.Contains(server.Runtimes, req.Runtime) {
		fe = append(fe, errs.FieldError{Field: "runtime", Rule: server.RuntimeRule})
	}
	if err := errs.Fields(fe...); err != nil {
		return node.Enrollment{}, err
	}
	en, err := f.Get(ctx, req.Node)
	if err != nil {
		return node.Enrollment{}, err
	}
	if en.State == node.EnrollRevoked {
		return node.Enrollment{}, errs.Wrap(errs.Conflict, ErrRevoked, "node %s", req.Node)
	}
	kinds, err := f.reportedRuntimes(ctx, req.Node)
	if err != nil {
		return node.Enrollment{}, err
	}
	if !slices.Contains(kinds, req.Runtime) {
		has := "none: its agent has not reported yet"
		if len(kinds) > 0 {
			has = strings.Join(kinds, ", ")
		}
		return node.Enrollment{}, errs.Field("runtime", "node "+req.Node+" has no "+req.Runtime+" runtime (it has "+has+")")
	}
	if en.DefaultRuntime == req.Runtime {
		return en, nil
	}
	en.DefaultRuntime = req.Runtime
	if en, err = f.write(ctx, en); err != nil {
		return node.Enrollment{}, err
	}
	f.log.Info("node default runtime set", logkey.Node, req.Node, logkey.Runtime, req.Runtime)
	return en, nil
}

// reportedRuntimes lists the runtimes the node's agent last reported in
// its record (none when it never reported).
func (f *Fleet) reportedRuntimes(ctx context.Context, id string) ([]string, error) {
	kv, err := f.js.KeyValue(ctx, subject.BucketNodes)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketNodes)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "reading node %s", id)
	}
	var n node.Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		return nil, errs.Wrap(errs.Internal, err, "decoding node %s", id)
	}
	return n.RuntimeKinds(), nil
}
