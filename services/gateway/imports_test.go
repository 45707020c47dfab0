package gateway_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// marzbanExport is the body of Marzban's GET /api/users for n users
// named mz_<i>: a VLESS REALITY id and a Shadowsocks password of a
// pre-2022 method (each is a mapping warning), limits, expiry, links and
// the fields the importer ignores, as a real panel exports them.
func marzbanExport(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"users":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		id := fmt.Sprintf("%08x-5e1f-4a2b-9c3d-%012x", i, i)
		fmt.Fprintf(&b, `{"username":"mz_%05d","status":"active","used_traffic":%d,"lifetime_used_traffic":%d,`+
			`"created_at":"2024-11-02T08:15:30","proxies":{"vless":{"id":"%s","flow":"xtls-rprx-vision"},`+
			`"shadowsocks":{"password":"pw%09d","method":"chacha20-ietf-poly1305"}},"expire":1893456000,`+
			`"data_limit":53687091200,"data_limit_reset_strategy":"month","inbounds":{"vless":["VLESS TCP REALITY"],`+
			`"shadowsocks":["Shadowsocks TCP"]},"note":"customer %d","sub_updated_at":null,"online_at":null,`+
			`"on_hold_expire_duration":null,"on_hold_timeout":null,"auto_delete_in_days":null,`+
			`"excluded_inbounds":{"vless":[],"shadowsocks":[]},"links":["vless://%s@vpn.example.org:443?security=reality&type=tcp&flow=xtls-rprx-vision&sni=www.microsoft.com&fp=chrome#mz_%05d"],`+
			`"subscription_url":"/sub/bXpf%05dLDE3MzA1MzUzMzA","admin":{"username":"admin","is_sudo":true}}`,
			i, int64(i)<<20, int64(i)<<21, id, i, i, id, i, i)
	}
	fmt.Fprintf(&b, `],"total":%d}`, n)
	return b.Bytes()
}

// TestMarzbanImportOf50kUsersOnDefaultMaxPayload imports a 50,000-user
// Marzban export (about 40 MB) through the HTTP API, as `vpn users
// import` sends it, on a NATS whose max_payload is the default 1 MiB, as
// a cluster's is: the gateway puts the file in the job inputs store, the
// registry reads it from there, the job creates every user, the report
// lists at most job.MaxReportProblems warnings and counts the rest, and
// the input is deleted when the job ends.
func TestMarzbanImportOf50kUsersOnDefaultMaxPayload(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 50,000 users; -short skips it")
	}
	const n = 50_000
	h := newHarnessWith(t, options{noHealth: true, nats: natstest.Options{MaxPayload: natstest.DefaultMaxPayload}})
	if mp := h.nc.MaxPayload(); mp != natstest.DefaultMaxPayload {
		t.Fatalf("the server's max_payload is %d, want the default %d", mp, natstest.DefaultMaxPayload)
	}
	file := marzbanExport(n)
	if len(file) < 8<<20 {
		t.Fatalf("the export is %d bytes; it should exceed even the old 8 MiB message limit", len(file))
	}
	body, ct := form(t, file)
	r := h.postForm("operator", body, ct)
	if r.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created job.CreateResponse
	if err := json.Unmarshal(r.body, &created); err != nil {
		t.Fatal(err)
	}
	rep := created.Report
	if rep.Format != job.FormatMarzban || rep.Records != n || rep.Valid != n {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Warnings) != job.MaxReportProblems || rep.WarningsOmitted != n-job.MaxReportProblems {
		t.Fatalf("report lists %d warnings and omits %d, want %d and %d", len(rep.Warnings), rep.WarningsOmitted, job.MaxReportProblems, n-job.MaxReportProblems)
	}
	in := created.Job.Input
	if in == nil || in.Size != int64(len(file)) {
		t.Fatalf("job input %+v, want the file's %d bytes", in, len(file))
	}
	var rec job.Job
	waitfor.Cond(t, 10*time.Minute, func() error {
		g := h.do("GET", "/api/v1/jobs/"+created.Job.ID, "viewer", nil)
		if err := json.Unmarshal(g.body, &rec); err != nil {
			return err
		}
		if !rec.State.Final() {
			return fmt.Errorf("job %s: %d of %d", rec.State, rec.Processed(), rec.Total)
		}
		return nil
	})
	if rec.State != job.StateCompleted || rec.Done != n || rec.Failed != 0 {
		t.Fatalf("job %+v", rec)
	}
	c, err := bus.Request[user.CountResponse](ctxT(t), h.nc, subject.UsersCmd(subject.UsersCount), user.Filter{NamePrefix: "mz_"})
	if err != nil || c.Count != n {
		t.Fatalf("%d users named mz_* (%v), want %d", c.Count, err, n)
	}
	obs, err := h.js.ObjectStore(ctxT(t), subject.BucketJobInputs)
	if err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 30*time.Second, func() error {
		if _, err := obs.GetInfo(ctxT(t), in.Name); !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("input %s still stored after the job ended (%v)", in.Name, err)
		}
		return nil
	})
}
