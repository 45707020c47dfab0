package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is the jobs core on a real JetStream server, with the registry
// and the index it works with, and the JOBS consumer the service's
// workers read, driven by hand so a test decides when a batch is applied.
type fixture struct {
	t    *testing.T
	ctx  context.Context
	reg  *registry.Registry
	idx  *index.Index
	jobs *Jobs
	cons jetstream.Consumer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s := natstest.Start(t)
	js := s.JetStream()
	log := natstest.Logger(t)
	reg, err := registry.Open(ctx, js, log, registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.EnableAtomic(ctx); err != nil {
		t.Fatal(err)
	}
	idx := index.New()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return idx.Follow(gctx, reg.Users(), log, registry.Decode) })
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("index: %v", err)
		}
	})
	<-idx.Ready()
	jb, err := Open(ctx, js, reg, idx, log, Options{BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, subject.StreamJobs, subject.UsersJobsConsumer())
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: ctx, reg: reg, idx: idx, jobs: jb, cons: cons}
}

// batches takes every queued batch off the JOBS stream, acknowledged.
func (f *fixture) batches(want int) []Batch {
	f.t.Helper()
	var out []Batch
	waitfor.Cond(f.t, 10*time.Second, func() error {
		msgs, err := f.cons.FetchNoWait(want - len(out))
		if err != nil {
			return err
		}
		for m := range msgs.Messages() {
			var b Batch
			if err := json.Unmarshal(m.Data(), &b); err != nil {
				f.t.Fatal(err)
			}
			if err := m.Ack(); err != nil {
				return err
			}
			out = append(out, b)
		}
		if len(out) < want {
			return fmt.Errorf("%d of %d batches queued", len(out), want)
		}
		return nil
	})
	return out
}

func (f *fixture) apply(bs []Batch) job.Job {
	f.t.Helper()
	for _, b := range bs {
		if err := f.jobs.Apply(f.ctx, b); err != nil {
			f.t.Fatalf("batch %d of job %s: %v", b.Index, b.Job, err)
		}
	}
	rec, err := f.jobs.Get(f.ctx, job.IDRequest{ID: bs[0].Job})
	if err != nil {
		f.t.Fatal(err)
	}
	return rec
}

// waitGone waits until the index no longer holds the users, as the
// job's workers see them after a delete.
func (f *fixture) waitGone(ids ...string) {
	f.t.Helper()
	waitfor.Cond(f.t, 10*time.Second, func() error {
		for _, id := range ids {
			if _, ok := f.idx.Get(id); ok {
				return fmt.Errorf("index still holds user %s", id)
			}
		}
		return nil
	})
}

func csvUsers(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("name,email\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%03d,%s%d@example.com\n", prefix, i, prefix, i)
	}
	return b.Bytes()
}

// TestRollbackRedoneAfterACrashCountsDeletedUsersAsDone rolls back an
// import of 25 users. In the crash case the first run of every rollback
// batch deletes its users and dies before counting them; the redelivered
// batches find them gone, and the rollback must count all 25 as done, as
// a run without a crash does. A user an operator deleted before the
// rollback was not removed by it: that one is skipped.
func TestRollbackRedoneAfterACrashCountsDeletedUsersAsDone(t *testing.T) {
	const n = 25
	for _, tc := range []struct {
		name          string
		crash         bool
		deletedBefore int
		done, skipped int
	}{
		{name: "no crash", done: n},
		{name: "redone after a crash", crash: true, done: n},
		{name: "user deleted before the rollback", deletedBefore: 1, done: n - 1, skipped: 1},
		{name: "user deleted before the rollback, redone after a crash", crash: true, deletedBefore: 1, done: n - 1, skipped: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			imp, err := f.jobs.Create(f.ctx, job.CreateRequest{Kind: job.KindImport, Data: csvUsers("rb", n)})
			if err != nil {
				t.Fatal(err)
			}
			if rec := f.apply(f.batches(imp.Job.Batches)); rec.State != job.StateCompleted || rec.Done != n {
				t.Fatalf("import: %+v", rec)
			}
			for i := range tc.deletedBefore {
				u, err := f.reg.GetByName(f.ctx, fmt.Sprintf("rb-%03d", i))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := f.reg.Delete(f.ctx, user.RevisionRequest{ID: u.ID}); err != nil {
					t.Fatal(err)
				}
				f.waitGone(u.ID)
			}

			rb, err := f.jobs.Rollback(f.ctx, job.IDRequest{ID: imp.Job.ID})
			if err != nil {
				t.Fatal(err)
			}
			bs := f.batches(rb.Batches)
			if tc.crash {
				// The first run of each batch applies it and dies before
				// its outcome is counted.
				var ids []string
				for _, b := range bs {
					if err := f.jobs.applyRollback(f.ctx, b, &outcome{}); err != nil {
						t.Fatal(err)
					}
					for _, it := range b.Items {
						ids = append(ids, it.ID)
					}
				}
				f.waitGone(ids...)
			}
			rec := f.apply(bs)
			if rec.State != job.StateCompleted || rec.Done != tc.done || rec.Skipped != tc.skipped || rec.Failed != 0 {
				t.Fatalf("rollback: state %s, done %d, skipped %d, failed %d; want completed, done %d, skipped %d, failed 0",
					rec.State, rec.Done, rec.Skipped, rec.Failed, tc.done, tc.skipped)
			}
			if left := f.idx.Count(user.Filter{}); left != 0 {
				t.Fatalf("%d users left after the rollback", left)
			}
		})
	}
}
