package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime/runtimetest"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/services/users/userstest"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// xrayWait bounds how long Xray may take to hold what the registry holds
// after a job: 10,000 users on four inbounds, on a shared machine.
const xrayWait = 3 * time.Minute

// newFleetOnProcesses is a fleet whose registry runs as vpn-users
// processes the test starts (and kills) itself; the agent runs in
// process on the process runtime.
func newFleetOnProcesses(t testing.TB) *fleet {
	t.Helper()
	ns := natstest.Start(t)
	nc := ns.Conn()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ns: ns, nc: nc, js: js, node: runtimetest.NewNode("srv"), runtime: "process",
		dataDir: t.TempDir(), xrayBin: xraytest.Binary(t)}
	t.Cleanup(f.removeWorkloads)
	return f
}

// importCSV is a CSV import of n active users named prefix-<i> with every
// protocol.
func importCSV(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("name,protocols\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%05d,vless-reality;shadowsocks-2022;socks5;http\n", prefix, i)
	}
	return b.Bytes()
}

// registryIDs lists the ids of every user in the users bucket.
func (f *fleet) registryIDs() []string {
	f.t.Helper()
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketUsers)
	if err != nil {
		f.t.Fatal(err)
	}
	lister, err := kv.ListKeys(f.ctx())
	if err != nil {
		f.t.Fatal(err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k)
	}
	slices.Sort(ids)
	return ids
}

// waitXrayHolds polls until every inbound of s holds exactly ids (sorted)
// and returns how long that took.
func (f *fleet) waitXrayHolds(s server.Server, ids []string, what string) time.Duration {
	f.t.Helper()
	start := time.Now()
	waitfor.Cond(f.t, xrayWait, func() error {
		held, err := f.inboundUsers(s)
		if err != nil {
			return err
		}
		for tag, got := range held {
			if got = sortedCopy(got); !slices.Equal(got, ids) {
				return fmt.Errorf("%s: inbound %s holds %d users, want the %d %s", what, tag, len(got), len(ids), what)
			}
		}
		return nil
	})
	return time.Since(start)
}

// jobRecordOf reads a job's record from the bucket, so it works while no
// registry replica runs.
func (f *fleet) jobRecordOf(id string) (job.Job, error) {
	kv, err := f.js.KeyValue(f.ctx(), subject.BucketJobs)
	if err != nil {
		return job.Job{}, err
	}
	e, err := kv.Get(f.ctx(), subject.JobRecordKey(id))
	if err != nil {
		return job.Job{}, err
	}
	var rec job.Job
	err = json.Unmarshal(e.Value(), &rec)
	return rec, err
}

// waitJobFinal waits until job id is final and returns its record.
func (f *fleet) waitJobFinal(id string) job.Job {
	f.t.Helper()
	var rec job.Job
	waitfor.Cond(f.t, 3*time.Minute, func() error {
		var err error
		if rec, err = f.jobRecordOf(id); err == nil && !rec.State.Final() {
			err = fmt.Errorf("job %s: %d of %d processed", rec.State, rec.Processed(), rec.Total)
		}
		return err
	})
	return rec
}

func (f *fleet) jobs(endpoint string, req, out any) {
	f.t.Helper()
	var err error
	switch o := out.(type) {
	case *job.CreateResponse:
		*o, err = bus.Request[job.CreateResponse](f.ctx(), f.nc, subject.JobsCmd(endpoint), req)
	case *job.Job:
		*o, err = bus.Request[job.Job](f.ctx(), f.nc, subject.JobsCmd(endpoint), req)
	}
	if err != nil {
		f.t.Fatalf("jobs %s: %v", endpoint, err)
	}
}

// TestImportSurvivesKill9OnXray is the sibling of the registry's
// TestImportSurvivesKill9 with a real node beside it: a server deployed
// through vpn.servers.create on an agent (process runtime, the pinned
// Xray), then a 10,000-user import while vpn-users is killed with SIGKILL
// at five random points and restarted. At the end the job is complete and
// the node's Xray holds exactly the registry's 10,000 users on every
// inbound, VLESS included: nothing lost, nothing extra, no user twice.
func TestImportSurvivesKill9OnXray(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a binary; -short skips it")
	}
	const n = 10_000
	bin := userstest.Build(t)
	f := newFleetOnProcesses(t)
	args := []string{"--job-batch", "100", "--job-workers", "1"}
	r := userstest.Start(t, bin, f.ns, args...)
	f.startAgent()
	srv := f.createServer("edge", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)

	var created job.CreateResponse
	f.jobs(subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: importCSV("crash", n), IdempotencyKey: "xray-crash-import"}, &created)
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
			var err error
			if rec, err = f.jobRecordOf(id); err != nil {
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
		r = userstest.Start(t, bin, f.ns, args...)
	}
	if during < 5 {
		t.Errorf("only %d of 5 kills happened while the job ran", during)
	}
	if rec := f.waitJobFinal(id); rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 || rec.Skipped != 0 {
		t.Fatalf("job %+v", rec)
	}
	ids := f.registryIDs()
	if len(ids) != n {
		t.Fatalf("the registry holds %d users, want %d", len(ids), n)
	}
	took := f.waitXrayHolds(srv, ids, "imported users")
	t.Logf("xray held all %d users on every inbound %s after the job completed", n, took.Round(time.Millisecond))
	r.Stop()
}

// TestRollbackRestoresXrayUsers is the sibling of the registry's
// TestRollbackImportAndBulkDelete with a real node beside it: after an
// import and its rollback the node's Xray holds exactly the users from
// before; after a delete by filter and its rollback it holds the same
// users again with the same credentials, so a client configured from a
// user's link before the delete connects again.
func TestRollbackRestoresXrayUsers(t *testing.T) {
	f := newFleet(t, "process")
	f.startAgent()
	target := xraytest.StartHTTPTarget(t)
	srv := f.createServer("edge", xraytest.StartTLSDest(t, sni))
	f.waitStatus(srv.ID, srv.Revision, server.StateApplied)
	var old []user.User
	for i := range 5 {
		old = append(old, f.createUser(fmt.Sprintf("old-%d", i)))
	}
	before := f.registryIDs()
	f.waitXrayHolds(srv, before, "users from before")

	// One client per protocol of old-0, from its links before anything.
	links := f.links(old[0].ID, srv.ID)
	clients := map[user.Protocol]*xraytest.Client{}
	for _, p := range user.Protocols {
		clients[p] = xraytest.StartClient(t, f.xrayBin, outbound(t, links[p]))
		connects(t, clients[p], target, "old-0 over "+string(p))
	}

	var imp job.CreateResponse
	f.jobs(subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: importCSV("new", 600)}, &imp)
	if rec := f.waitJobFinal(imp.Job.ID); rec.Done != 600 {
		t.Fatalf("import %+v", rec)
	}
	f.waitXrayHolds(srv, f.registryIDs(), "users after the import")
	var rb job.Job
	f.jobs(subject.JobsRollback, job.IDRequest{ID: imp.Job.ID}, &rb)
	if rec := f.waitJobFinal(rb.ID); rec.Done != 600 {
		t.Fatalf("rollback of the import %+v", rec)
	}
	if ids := f.registryIDs(); !slices.Equal(ids, before) {
		t.Fatalf("registry after the rollback: %d users, want the %d from before", len(ids), len(before))
	}
	f.waitXrayHolds(srv, before, "users from before")

	var del job.CreateResponse
	f.jobs(subject.JobsCreate, job.CreateRequest{Kind: job.KindDelete, Filter: &job.Filter{NamePrefix: "old-"}}, &del)
	if rec := f.waitJobFinal(del.Job.ID); rec.Done != 5 {
		t.Fatalf("delete %+v", rec)
	}
	f.waitXrayHolds(srv, nil, "users after the delete")
	for _, p := range user.Protocols {
		refused(t, clients[p], target, "deleted old-0 over "+string(p))
	}
	f.jobs(subject.JobsRollback, job.IDRequest{ID: del.Job.ID}, &rb)
	if rec := f.waitJobFinal(rb.ID); rec.Done != 5 {
		t.Fatalf("rollback of the delete %+v", rec)
	}
	f.waitXrayHolds(srv, before, "users from before")
	for _, p := range user.Protocols {
		connects(t, clients[p], target, "restored old-0 over "+string(p)+" with its old link")
	}
	if again := f.links(old[0].ID, srv.ID); fmt.Sprint(again) != fmt.Sprint(links) {
		t.Fatalf("links after the rollback differ:\n%v\nwant\n%v", again, links)
	}
	for _, u := range old {
		cur, err := bus.Request[user.User](f.ctx(), f.nc, subject.UsersCmd(subject.UsersGet), user.GetRequest{ID: u.ID})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(cur.Credentials.VLESS, cur.Credentials.Shadowsocks, cur.Credentials.SOCKS5, cur.Credentials.HTTP) !=
			fmt.Sprint(u.Credentials.VLESS, u.Credentials.Shadowsocks, u.Credentials.SOCKS5, u.Credentials.HTTP) {
			t.Errorf("user %s came back with other credentials", u.Name)
		}
	}
}
