package migrate_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/migrate"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Records exactly as the release before the split wrote them: counters
// inside the user, the agent's report inside the server.
const (
	oldUser = `{"id":"5b1c2a8e-7e49-4a51-9a59-8d3b2b1e0c11","name":"alice","status":"active",` +
		`"protocols":["socks5"],"credentials":{"socks5":{"username":"5b1c2a8e-7e49-4a51-9a59-8d3b2b1e0c11","password":"pw"}},` +
		`"traffic_limit_bytes":0,"limit_reset":"none","usage":{"used_up":100,"used_down":2000,"lifetime_up":100,` +
		`"lifetime_down":2000,"reset_at":"2026-11-27T10:00:00Z","windows":{"n1":42}},"placement":{"all":true},` +
		`"created_at":"2026-11-27T10:00:00Z","updated_at":"2026-11-27T10:05:00Z","revision":0}`
	oldServer = `{"id":"srv1","node":"n1","name":"edge","engine":"xray","inbounds":[{"tag":"socks","protocol":"socks5","port":1080}],` +
		`"status":{"state":"applied","public_host":"203.0.113.7","applied_revision":1,"time":"2026-11-27T10:01:00Z"},` +
		`"created_at":"2026-11-27T10:00:00Z"}`
)

func TestMovesUsageAndStatusOutOfDesiredRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	js := ns.JetStream()
	users, _ := js.KeyValue(ctx, subject.BucketUsers)
	servers, _ := js.KeyValue(ctx, subject.BucketServers)
	usage, _ := js.KeyValue(ctx, subject.BucketUsage)
	status, _ := js.KeyValue(ctx, subject.BucketServerStatus)
	const uid = "5b1c2a8e-7e49-4a51-9a59-8d3b2b1e0c11"
	if _, err := users.Put(ctx, uid, []byte(oldUser)); err != nil {
		t.Fatal(err)
	}
	if _, err := servers.Put(ctx, "srv1", []byte(oldServer)); err != nil {
		t.Fatal(err)
	}

	res, err := migrate.Run(ctx, js, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 1 || res.Servers != 1 {
		t.Fatalf("migrated %+v, want one user and one server", res)
	}

	e, err := users.Get(ctx, uid)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["usage"]; ok {
		t.Errorf("user record still carries usage: %s", e.Value())
	}
	var u user.User
	if err := json.Unmarshal(e.Value(), &u); err != nil || u.Name != "alice" || u.Credentials.SOCKS5 == nil || u.Credentials.SOCKS5.Password != "pw" {
		t.Errorf("user record lost desired state: %s (%v)", e.Value(), err)
	}
	ue, err := usage.Get(ctx, uid)
	if err != nil {
		t.Fatalf("no usage entry: %v", err)
	}
	var c user.Usage
	if err := json.Unmarshal(ue.Value(), &c); err != nil {
		t.Fatal(err)
	}
	if c.UsedUp != 100 || c.UsedDown != 2000 || c.LifetimeDown != 2000 || c.Windows["n1"] != 42 {
		t.Errorf("usage moved as %+v", c)
	}

	se, err := servers.Get(ctx, "srv1")
	if err != nil {
		t.Fatal(err)
	}
	raw = nil
	if err := json.Unmarshal(se.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["status"]; ok {
		t.Errorf("server record still carries status: %s", se.Value())
	}
	var s server.Server
	if err := json.Unmarshal(se.Value(), &s); err != nil {
		t.Fatal(err)
	}
	ste, err := status.Get(ctx, subject.ServerStatusKey("n1", "srv1"))
	if err != nil {
		t.Fatalf("no status entry: %v", err)
	}
	var st server.Status
	if err := json.Unmarshal(ste.Value(), &st); err != nil {
		t.Fatal(err)
	}
	if st.State != server.StateApplied || st.PublicHost != "203.0.113.7" || st.Spec != s.SpecKey() {
		t.Errorf("status moved as %+v (spec of the server %s)", st, s.SpecKey())
	}

	// Again: nothing left to do, nothing changed.
	res, err = migrate.Run(ctx, js, natstest.Logger(t))
	if err != nil || res != (migrate.Result{}) {
		t.Fatalf("second run = %+v, %v; want nothing", res, err)
	}
	if e2, _ := usage.Get(ctx, uid); e2.Revision() != ue.Revision() {
		t.Error("second run rewrote the usage entry")
	}
}
