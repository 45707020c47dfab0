package users_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// jobRecord reads a job's record straight from the bucket, so it works
// while no replica runs.
func jobRecord(ctx context.Context, kv jetstream.KeyValue, id string) (job.Job, error) {
	e, err := kv.Get(ctx, subject.JobRecordKey(id))
	if err != nil {
		return job.Job{}, err
	}
	var rec job.Job
	err = json.Unmarshal(e.Value(), &rec)
	return rec, err
}

// crashSetup is what a kill test starts from: the vpn-users binary, a
// test server, a connection and JetStream on it, the jobs bucket, and a
// context that bounds the test.
func crashSetup(t *testing.T) (bin string, srv *natstest.Server, nc *nats.Conn, js jetstream.JetStream, jobsKV jetstream.KeyValue, ctx context.Context) {
	t.Helper()
	bin = userstest.Build(t)
	srv = natstest.Start(t)
	nc = srv.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	jobsKV, err = js.KeyValue(ctx, subject.BucketJobs)
	if err != nil {
		t.Fatal(err)
	}
	return bin, srv, nc, js, jobsKV, ctx
}

// TestImportSurvivesKill9 imports 10,000 users and kills the vpn-users
// process with SIGKILL at five random points of the job, restarting it
// each time: the job completes with exactly the 10,000 users of the file,
// each stored once (one write per user in the bucket's stream, one
// created event per user).
func TestImportSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a binary; -short skips it")
	}
	const n = 10_000
	bin, srv, nc, js, jobsKV, ctx := crashSetup(t)
	var err error
	// Small batches and one worker: many commits, so the kills land
	// between and inside them.
	args := []string{"--job-batch", "50", "--job-workers", "1"}
	r := userstest.Start(t, bin, srv, args...)
	data := csvUsers("crash", n)
	var created job.CreateResponse
	waitfor.Cond(t, 30*time.Second, func() error {
		created, err = bus.Request[job.CreateResponse](ctx, nc, subject.JobsCmd(subject.JobsCreate),
			job.CreateRequest{Kind: job.KindImport, Data: data, IdempotencyKey: "crash-import"})
		return err
	})
	id := created.Job.ID

	points := make([]int, 5)
	for i := range points {
		points[i] = rand.IntN(n * 8 / 10)
	}
	slices.Sort(points)
	during := 0
	for _, p := range points {
		var rec job.Job
		waitfor.Cond(t, 2*time.Minute, func() error {
			rec, err = jobRecord(ctx, jobsKV, id)
			if err != nil {
				return err
			}
			if rec.Processed() < p && !rec.State.Final() {
				return fmt.Errorf("%d of %d processed, waiting for %d", rec.Processed(), n, p)
			}
			return nil
		})
		r.Kill()
		if !rec.State.Final() {
			during++
		}
		t.Logf("SIGKILL at %d processed (point %d)", rec.Processed(), p)
		r = userstest.Start(t, bin, srv, args...)
	}
	if during < 5 {
		t.Errorf("only %d of 5 kills happened while the job ran", during)
	}
	var rec job.Job
	waitfor.Cond(t, 3*time.Minute, func() error {
		rec, err = jobRecord(ctx, jobsKV, id)
		if err == nil && !rec.State.Final() {
			err = fmt.Errorf("job %s: %d of %d processed", rec.State, rec.Processed(), n)
		}
		return err
	})
	if rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 || rec.Skipped != 0 {
		t.Fatalf("job %+v", rec)
	}
	r.Stop()

	// Exactly the file's users, each written once.
	users, err := js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	lister, err := users.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range lister.Keys() {
		e, err := users.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var u user.User
		if err := json.Unmarshal(e.Value(), &u); err != nil {
			t.Fatal(err)
		}
		if other, dup := names[u.Name]; dup {
			t.Fatalf("name %s stored twice: %s and %s", u.Name, other, u.ID)
		}
		names[u.Name] = u.ID
	}
	if len(names) != n {
		t.Fatalf("%d users stored, want %d", len(names), n)
	}
	for i := range n {
		if _, ok := names[fmt.Sprintf("crash-%05d", i)]; !ok {
			t.Fatalf("user crash-%05d missing", i)
		}
	}
	st, err := js.Stream(ctx, "KV_"+subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n || info.State.LastSeq != n {
		t.Fatalf("users stream holds %d messages up to sequence %d: want %d writes, one per user", info.State.Msgs, info.State.LastSeq, n)
	}
	createdEvents := map[string]int{}
	for _, env := range natstest.Events(t, js, subject.EventsOfKind(subject.KindUser)) {
		if env.Type == event.UserCreated {
			var e user.Event
			if err := env.Decode(&e); err != nil {
				t.Fatal(err)
			}
			createdEvents[e.User.ID]++
		}
	}
	if len(createdEvents) != n {
		t.Fatalf("created events for %d users, want %d", len(createdEvents), n)
	}
	for id, c := range createdEvents {
		if c != 1 {
			t.Fatalf("user %s has %d created events", id, c)
		}
	}
}
