package natstest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// ReportStatus writes st as s's node's agent does: into the server_status
// bucket under "<node>.<server>", naming the spec and revision applied
// (s.Revision). Tests without an agent use it to make a server applied.
func ReportStatus(t testing.TB, js jetstream.JetStream, s server.Server, st server.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, subject.BucketServerStatus)
	if err != nil {
		t.Fatalf("opening %s: %v", subject.BucketServerStatus, err)
	}
	st.AppliedRevision, st.Spec, st.Time = s.Revision, s.SpecKey(), time.Now().UTC()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, subject.ServerStatusKey(s.Node, s.ID), data); err != nil {
		t.Fatalf("reporting the status of %s: %v", s.ID, err)
	}
}
