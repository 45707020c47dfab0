package users_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// callJobs sends one request to a jobs endpoint.
func callJobs[Resp any](h *harness, endpoint string, req any) (Resp, error) {
	ctx := ctxT(h.t)
	return bus.Request[Resp](ctx, h.nc, subject.JobsCmd(endpoint), req)
}

func mustJobs[Resp any](h *harness, endpoint string, req any) Resp {
	h.t.Helper()
	resp, err := callJobs[Resp](h, endpoint, req)
	if err != nil {
		h.t.Fatalf("jobs %s: %v", endpoint, err)
	}
	return resp
}

// waitJob waits until job id is final and returns its record.
func (h *harness) waitJob(id string, within time.Duration) job.Job {
	h.t.Helper()
	var rec job.Job
	waitfor.Cond(h.t, within, func() error {
		var err error
		rec, err = callJobs[job.Job](h, subject.JobsGet, job.IDRequest{ID: id})
		if err != nil {
			return err
		}
		if !rec.State.Final() {
			return fmt.Errorf("job %s is %s: %d/%d done", id, rec.State, rec.Processed(), rec.Total)
		}
		return nil
	})
	return rec
}

// csvUsers is a CSV file of n users named prefix-<n>.
func csvUsers(prefix string, n int) []byte {
	var b bytes.Buffer
	b.WriteString("name,email,traffic_limit_bytes,protocols\n")
	for i := range n {
		fmt.Fprintf(&b, "%s-%05d,%s%d@example.com,%d,vless-reality;shadowsocks-2022\n", prefix, i, prefix, i, 1<<30)
	}
	return b.Bytes()
}

// allUsers lists every user through the users service.
func (h *harness) allUsers() []user.User {
	h.t.Helper()
	var out []user.User
	cursor := ""
	for {
		page := must[user.ListResponse](h, subject.UsersList, user.ListRequest{Limit: 1000, Cursor: cursor})
		out = append(out, page.Users...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}

func TestImportCSV(t *testing.T) {
	h := newHarness(t)
	h.start()
	const n = 2000
	start := time.Now()
	resp := mustJobs[job.CreateResponse](h, subject.JobsCreate, job.CreateRequest{Kind: job.KindImport, Data: csvUsers("imp", n)})
	if resp.Job == nil || resp.Report.Valid != n {
		t.Fatalf("create: %+v", resp.Report)
	}
	rec := h.waitJob(resp.Job.ID, time.Minute)
	t.Logf("%d users in %s", n, time.Since(start))
	if rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 {
		t.Fatalf("job %+v", rec)
	}
	waitfor.Cond(t, 10*time.Second, func() error {
		if c := must[user.CountResponse](h, subject.UsersCount, user.Filter{NamePrefix: "imp-"}); c.Count != n {
			return fmt.Errorf("count %d", c.Count)
		}
		return nil
	})
	_ = errors.Is
	_ = errs.Invalid
	_ = strings.Contains
}
