package health

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/health/internal/alert"
	"github.com/vpnfleet/vpnfleet/services/health/internal/metrics"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// MetricServerUsersBehind is the series of how many users a server's Xray
// lacks (or holds in excess) against its desired ones, per node and
// server, from the statuses agents write: the ServerUsersBehind rule
// fires when it stays above 0 (an apply that cannot finish).
const MetricServerUsersBehind = "server_users_behind"

// serverUsers follows the servers bucket (which servers exist, with which
// spec) and the server_status bucket (what their nodes report), so that
// only reports about a server's current spec count: a status left by a
// deleted server, or about a spec since replaced, is not a series.
type serverUsers struct {
	mu     sync.Mutex
	specs  map[string]serverSpec    // server id → desired node and spec key
	status map[string]server.Status // "<node>.<server>" → its node's report
}

type serverSpec struct{ node, key string }

func newServerUsers() *serverUsers {
	return &serverUsers{specs: map[string]serverSpec{}, status: map[string]server.Status{}}
}

// behind lists, for every server with a current report that counts users,
// how many users its Xray is off by (0 once it holds exactly the desired
// ones), sorted by node and server.
func (s *serverUsers) behind() []metrics.ServerUsers {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []metrics.ServerUsers
	for id, sp := range s.specs {
		st, ok := s.status[subject.ServerStatusKey(sp.node, id)]
		if !ok || st.Spec != sp.key || (st.UsersDesired == 0 && st.UsersApplied == 0 && st.UsersExtra == 0) {
			continue // no report yet, an older spec's, or an agent that does not count
		}
		if !st.Serving() {
			continue // pending or failed: other alerts say so
		}
		out = append(out, metrics.ServerUsers{Node: sp.node, Server: id, Desired: st.UsersDesired, Applied: st.UsersApplied, Behind: st.UsersBehind()})
	}
	slices.SortFunc(out, func(a, b metrics.ServerUsers) int {
		return strings.Compare(a.Node+"."+a.Server, b.Node+"."+b.Server)
	})
	return out
}

// samples are behind as the server_users_behind series.
func (s *serverUsers) samples() []alert.Sample {
	var out []alert.Sample
	for _, b := range s.behind() {
		out = append(out, alert.Sample{Metric: MetricServerUsersBehind, Labels: map[string]string{"node": b.Node, "server": b.Server}, Value: float64(b.Behind)})
	}
	return out
}

// watchServers follows the servers bucket.
func (a *active) watchServers(ctx context.Context) error {
	return a.watchBucket(ctx, subject.BucketServers, func(key string, value []byte, put bool) {
		su := a.servers
		su.mu.Lock()
		defer su.mu.Unlock()
		if !put {
			delete(su.specs, key)
			return
		}
		var srv server.Server
		if err := json.Unmarshal(value, &srv); err != nil || srv.ID != key {
			a.s.env.Log.Warn("ignoring malformed server entry", logkey.Server, key, logkey.Err, err)
			return
		}
		su.specs[key] = serverSpec{node: srv.Node, key: srv.SpecKey()}
	})
}

// watchServerStatus follows the server_status bucket.
func (a *active) watchServerStatus(ctx context.Context) error {
	return a.watchBucket(ctx, subject.BucketServerStatus, func(key string, value []byte, put bool) {
		su := a.servers
		su.mu.Lock()
		defer su.mu.Unlock()
		if _, _, ok := subject.ParseServerStatusKey(key); !ok || !put {
			delete(su.status, key)
			return
		}
		var st server.Status
		if err := json.Unmarshal(value, &st); err != nil {
			a.s.env.Log.Warn("ignoring malformed server status", logkey.Server, key, logkey.Err, err)
			return
		}
		su.status[key] = st
	})
}

// watchBucket calls fn for every entry of bucket and every change after,
// put false for a deletion, until ctx ends.
func (a *active) watchBucket(ctx context.Context, bucket string, fn func(key string, value []byte, put bool)) error {
	kv, err := a.s.env.JS.KeyValue(ctx, bucket)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "opening bucket %s", bucket)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching %s", bucket)
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		fn(e.Key(), e.Value(), e.Operation() == jetstream.KeyValuePut)
	}
	return nil
}
