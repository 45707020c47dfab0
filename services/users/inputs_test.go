package users_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/jobinput"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestCreateKilledMidwayFindsItsInputAgain: an import of 20,000 users
// (1.4 MB, more than one default NATS message) is put in the job inputs
// store and its create request names it. vpn-users is killed with SIGKILL
// while it handles the create (after it remembered the idempotency key,
// before it answered). The retried create, answered by the restarted
// process, reads the same input from the store and the job applies exactly
// the file's users; when the job ends the input is deleted.
func TestCreateKilledMidwayFindsItsInputAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a binary; -short skips it")
	}
	const n = 20_000
	bin, srv, nc, js, jobsKV, ctx := crashSetup(t)
	data := csvUsers("input", n)
	if len(data) <= 1<<20 {
		t.Fatalf("the file is %d bytes; the test needs more than one 1 MiB message", len(data))
	}
	in, err := jobinput.Put(ctx, js, bytes.NewReader(data), int64(len(data)), "file")
	if err != nil {
		t.Fatal(err)
	}
	const key = "input-crash"
	sum := sha256.Sum256([]byte(key))
	keyEntry := subject.JobIdempotencyKey(hex.EncodeToString(sum[:]))
	req := job.CreateRequest{Kind: job.KindImport, Input: &in, IdempotencyKey: key}

	// Small batches: enqueueing takes long enough for the kill to land
	// inside the create.
	args := []string{"--job-batch", "10"}
	r := userstest.Start(t, bin, srv, args...)
	first := make(chan error, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer rcancel()
		for {
			// The jobs endpoints register just after the users ones,
			// which Start waits for: no responders means not yet.
			_, err := bus.Request[job.CreateResponse](rctx, nc, subject.JobsCmd(subject.JobsCreate), req)
			if !errors.Is(err, nats.ErrNoResponders) || rctx.Err() != nil {
				first <- err
				return
			}
			select {
			case <-rctx.Done():
			case <-time.After(waitfor.Interval):
			}
		}
	}()
	waitfor.Cond(t, 2*time.Minute, func() error {
		_, err := jobsKV.Get(ctx, keyEntry)
		return err
	})
	r.Kill()
	if err := <-first; err == nil {
		t.Fatal("the first create was answered: the kill did not land inside it")
	}

	r = userstest.Start(t, bin, srv)
	var created job.CreateResponse
	waitfor.Cond(t, time.Minute, func() error {
		created, err = bus.Request[job.CreateResponse](ctx, nc, subject.JobsCmd(subject.JobsCreate), req)
		return err
	})
	var rec job.Job
	waitfor.Cond(t, 3*time.Minute, func() error {
		rec, err = jobRecord(ctx, jobsKV, created.Job.ID)
		if err == nil && !rec.State.Final() {
			err = fmt.Errorf("job %s: %d of %d", rec.State, rec.Processed(), rec.Total)
		}
		return err
	})
	if rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 || rec.Skipped != 0 {
		t.Fatalf("job %+v", rec)
	}
	if rec.Input == nil || rec.Input.Name != in.Name {
		t.Fatalf("job record names input %+v, want %s", rec.Input, in.Name)
	}
	count, err := bus.Request[user.CountResponse](ctx, nc, subject.UsersCmd(subject.UsersCount), user.Filter{NamePrefix: "input-"})
	if err != nil {
		t.Fatal(err)
	}
	if count.Count != n {
		t.Fatalf("%d users, want %d", count.Count, n)
	}
	obs, err := js.ObjectStore(ctx, subject.BucketJobInputs)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 30*time.Second, func() error {
		if _, err := obs.GetInfo(ctx, in.Name); !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("input %s still stored after the job ended (%v)", in.Name, err)
		}
		return nil
	})
	r.Stop()
}
