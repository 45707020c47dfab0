package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/linktest"
	"github.com/vpnfleet/vpnfleet/services/vpnd/internal/daemon"
	"github.com/vpnfleet/vpnfleet/shared/backup"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// fleetState is what a restored installation must serve as before.
type fleetState struct {
	links map[string][]user.Link // sampled user -> links
	subs  map[string]string      // sampled user -> subscription URL
	body  map[string][]byte      // sampled user -> subscription body
}

// installation is a vpnd with a node, servers, users, tokens and a job,
// reached through its API as its first admin.
type installation struct {
	instance
	dir   string
	admin api
}

// publicURL makes subscription URLs the same on both installations (each
// listens on its own port), as --public-url does in production.
const publicURL = "https://vpn.example.test"

// backupNode is the node id of both installations.
const backupNode = "bk"

func startInstallation(t *testing.T, dir, xray string, tokenFrom string) installation {
	t.Helper()
	v := start(t, dir, "--node-id", backupNode, "--public-addr", "127.0.0.1", "--xray-bin", xray, "--heartbeat", "200ms",
		"--allow-private-networks", "--public-url", publicURL, "--rate-limit", "0")
	t.Cleanup(func() { _ = v.stop(); removeXray(t, dir) })
	waitReady(t, v.GatewayURL)
	token, err := os.ReadFile(filepath.Join(tokenFrom, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return installation{instance: v, dir: dir, admin: api{t: t, base: v.GatewayURL, token: strings.TrimSpace(string(token))}}
}

// waitApplied waits until every server is applied by the node's agent.
func (in installation) waitApplied(t *testing.T, ids []string) {
	t.Helper()
	waitfor.Cond(t, 2*time.Minute, func() error {
		for _, id := range ids {
			var s server.Server
			if err := in.admin.try(http.MethodGet, "/api/v1/servers/"+id, nil, &s, nil); err != nil {
				return err
			}
			if s.Status.State != server.StateApplied {
				return fmt.Errorf("server %s: %s %s", s.Name, s.Status.State, s.Status.Reason)
			}
		}
		return nil
	})
}

// waitNode waits until the installation's node has registered.
func (in installation) waitNode(t *testing.T) {
	t.Helper()
	waitfor.Cond(t, 30*time.Second, func() error {
		var list struct {
			Nodes []struct {
				ID      string `json:"id"`
				Healthy bool   `json:"healthy"`
			} `json:"nodes"`
		}
		if err := in.admin.try(http.MethodGet, "/api/v1/nodes", nil, &list, nil); err != nil {
			return err
		}
		// An enrolled node is listed before its agent registers it.
		for _, n := range list.Nodes {
			if n.ID == backupNode && n.Healthy {
				return nil
			}
		}
		return fmt.Errorf("node %s not registered and healthy yet: %+v", backupNode, list.Nodes)
	})
}

// populate deploys four servers (one per protocol), generates n users as
// a bulk job, and adds an operator token; it returns the servers' ids and
// the operator's token.
func (in installation) populate(t *testing.T, n int, dest string) (servers []string, operator string) {
	t.Helper()
	in.waitNode(t)
	inbounds := []server.InboundRequest{
		{Protocol: user.VLESSReality, Dest: dest, ServerNames: []string{"www.example.com"}},
		{Protocol: user.Shadowsocks2022, Method: user.SS2022AES128GCM},
		{Protocol: user.SOCKS5},
		{Protocol: user.HTTP},
	}
	var ids []string
	for i, ib := range inbounds {
		ib.Port, ib.Listen = freePortInt(t), "127.0.0.1"
		var s server.Server
		in.admin.do(http.MethodPost, "/api/v1/servers", server.CreateRequest{Node: backupNode, Name: fmt.Sprintf("edge-%d", i),
			Inbounds: []server.InboundRequest{ib}}, &s, nil)
		ids = append(ids, s.ID)
	}
	in.waitApplied(t, ids)

	var created job.CreateResponse
	in.admin.do(http.MethodPost, "/api/v1/jobs", job.CreateRequest{Kind: job.KindGenerate, Count: n, NamePrefix: "bk-",
		Template: &user.CreateRequest{}}, &created, nil)
	waitfor.Cond(t, 3*time.Minute, func() error {
		var j job.Job
		if err := in.admin.try(http.MethodGet, "/api/v1/jobs/"+created.Job.ID, nil, &j, nil); err != nil {
			return err // a busy machine may answer 503 for a moment
		}
		if j.State != job.StateCompleted {
			return fmt.Errorf("job %s: %d of %d done", j.State, j.Done, j.Total)
		}
		return nil
	})
	var tok struct {
		Secret string `json:"token"`
	}
	in.admin.do(http.MethodPost, "/api/v1/tokens", map[string]string{"name": "ops", "role": "operator"}, &tok, nil)
	if tok.Secret == "" {
		t.Fatal("no operator token was made")
	}
	return ids, tok.Secret
}

// state reads the links and subscriptions of the sampled users.
func (in installation) state(t *testing.T, sample []string) fleetState {
	t.Helper()
	st := fleetState{links: map[string][]user.Link{}, subs: map[string]string{}, body: map[string][]byte{}}
	for _, name := range sample {
		waitfor.Cond(t, time.Minute, func() error {
			var l user.LinksResponse
			if err := in.admin.try(http.MethodGet, "/api/v1/users/"+name+"/links", nil, &l, nil); err != nil {
				return err
			}
			if len(l.Links) != 4 {
				return fmt.Errorf("user %s has %d links, want 4 (one per server)", name, len(l.Links))
			}
			slices.SortFunc(l.Links, func(a, b user.Link) int { return strings.Compare(a.URL, b.URL) })
			st.links[name] = l.Links
			return nil
		})
		var sub struct {
			URL string `json:"url"`
		}
		in.admin.do(http.MethodGet, "/api/v1/users/"+name+"/subscription", nil, &sub, nil)
		st.subs[name] = sub.URL
		resp, err := http.Get(in.GatewayURL + strings.TrimPrefix(sub.URL, publicURL))
		if err != nil {
			t.Fatal(err)
		}
		st.body[name], _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(st.body[name]) == 0 {
			t.Fatalf("subscription of %s: %d %q", name, resp.StatusCode, st.body[name])
		}
	}
	return st
}

// counts reads the message count of every stream of an installation.
func (in installation) counts(t *testing.T) map[string]uint64 {
	t.Helper()
	nc := connectNATS(t, in.ready)
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]uint64{}
	for _, name := range backup.Required() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().State.Msgs
	}
	return out
}

// desired are the streams whose content only the operator changes: a
// restored installation holds exactly what the backup held.
var desired = []string{"KV_" + subject.BucketUsers, "KV_" + subject.BucketUserNames, "KV_" + subject.BucketServers,
	"KV_" + subject.BucketTokens, "KV_" + subject.BucketSubTokens, "KV_" + subject.BucketJobs, "KV_" + subject.BucketEnrollments}

// TestBackupRestoreServesTheSameUsers is issue 17's backup test on one
// machine: a vpnd with four servers (one per protocol), users made by a
// bulk job, API and subscription tokens → a backup through the API,
// encrypted → refused restores of a truncated or corrupted file and a
// wrong passphrase (nothing written) → a restore into a fresh data dir →
// a fresh vpnd on it serves the same links and subscription URLs, the old
// tokens work, the counts match, and sampled users' links pass traffic
// through a real Xray client.
func TestBackupRestoreServesTheSameUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two vpnd with Xray servers; -short skips it")
	}
	const n = 10_000
	xray := linktest.Binary(t)
	dest := linktest.StartTLSDest(t, "www.example.com")
	target := linktest.StartHTTPTarget(t)

	dirA := t.TempDir()
	a := startInstallation(t, dirA, xray, dirA)
	servers, operator := a.populate(t, n, dest)
	width := len(fmt.Sprint(n)) // generated names are zero-padded
	sample := []string{fmt.Sprintf("bk-%0*d", width, 1), fmt.Sprintf("bk-%0*d", width, n/2), fmt.Sprintf("bk-%0*d", width, n)}
	before := a.state(t, sample)

	resp, err := http.DefaultClient.Do(mustRequest(t, a.admin, http.MethodPost, "/api/v1/backup"))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("backup through the API: %v %v", resp, err)
	}
	const pass = "backup test passphrase"
	var file bytes.Buffer
	enc, err := backup.Encrypt(&file, pass, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(enc, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	data := file.Bytes()
	m, err := backup.Verify(opener(data), pass)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, _ := m.Messages("KV_" + subject.BucketUsers); got != n {
		t.Fatalf("the backup holds %d users, want %d", got, n)
	}
	if len(m.Files) == 0 {
		t.Fatal("vpnd's backup holds no NATS trust")
	}
	if err := a.stop(); err != nil {
		t.Fatalf("stopping the first vpnd: %v", err)
	}
	removeXray(t, dirA)

	// Refused, and nothing written: not even the data dir.
	dirB := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	flipped := slices.Clone(data)
	flipped[len(flipped)/2] ^= 1
	for _, bad := range []struct {
		name, pass string
		file       []byte
		code       string
	}{
		{"truncated", pass, data[:len(data)-len(data)/3], backup.CodeCorrupt},
		{"corrupted", pass, flipped, backup.CodeCorrupt},
		{"wrong passphrase", "not the passphrase", data, backup.CodePassphrase},
	} {
		_, err := backup.RestoreDataDir(ctx, dirB, opener(bad.file), backup.RestoreOptions{Passphrase: bad.pass})
		if errs.CodeOf(err) != bad.code && !(bad.name == "truncated" && errs.CodeOf(err) == backup.CodeTruncated) {
			t.Fatalf("restore of a %s backup: %v, want %s", bad.name, err, bad.code)
		}
		if _, err := os.Stat(dirB); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused restore of a %s backup wrote %s", bad.name, dirB)
		}
	}
	if _, err := backup.RestoreDataDir(ctx, dirB, opener(data), backup.RestoreOptions{Passphrase: pass}); err != nil {
		t.Fatalf("restore: %v", err)
	}

	// The old admin token (from A's data dir) works on B: B made none.
	b := startInstallation(t, dirB, xray, dirA)
	if _, err := os.Stat(filepath.Join(dirB, "admin.token")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the restored vpnd made a new admin token: %v", err)
	}
	var tokens struct {
		Tokens []struct {
			Name string `json:"name"`
		} `json:"tokens"`
	}
	b.admin.do(http.MethodGet, "/api/v1/tokens", nil, &tokens, nil)
	if len(tokens.Tokens) != 2 {
		t.Fatalf("restored tokens: %+v, want the first admin and ops", tokens.Tokens)
	}
	// The operator token made on A works on B, with an operator's rights.
	ops := api{t: t, base: b.admin.base, token: operator}
	ops.do(http.MethodGet, "/api/v1/users?limit=1", nil, nil, nil)
	if err := ops.try(http.MethodGet, "/api/v1/tokens", nil, nil, nil); err == nil {
		t.Fatal("the restored operator token lists tokens, an admin's right")
	}
	counts := b.counts(t)
	for _, name := range desired {
		if want, _ := m.Messages(name); counts[name] != want {
			t.Errorf("stream %s: %d messages after restore, the backup held %d", name, counts[name], want)
		}
	}
	b.waitApplied(t, servers)
	after := b.state(t, sample)
	for _, name := range sample {
		if !slices.Equal(after.links[name], before.links[name]) {
			t.Errorf("links of %s changed:\nbefore %v\nafter  %v", name, before.links[name], after.links[name])
		}
		if after.subs[name] != before.subs[name] || !bytes.Equal(after.body[name], before.body[name]) {
			t.Errorf("subscription of %s changed: %s -> %s", name, before.subs[name], after.subs[name])
		}
	}
	passed := 0
	defer func() {
		t.Logf("backup of %d bytes (%d users); after restore %d sampled links passed traffic", len(data), n, passed)
	}()
	for _, name := range sample {
		for _, l := range after.links[name] {
			c := linktest.Start(t, xray, l.URL)
			waitfor.Cond(t, time.Minute, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := c.Fetch(ctx, target); err != nil {
					return fmt.Errorf("%s over %s: %w", name, l.Protocol, err)
				}
				return nil
			})
			passed++
		}
	}
}

// TestScheduledBackupsKeepTheNewest runs vpnd with --backup-every 1s and
// --backup-keep 2: backups appear, the oldest go, and each one verifies
// with the passphrase from --backup-passphrase-file.
func TestScheduledBackupsKeepTheNewest(t *testing.T) {
	dir := t.TempDir()
	backups := filepath.Join(t.TempDir(), "backups")
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("scheduled\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v := start(t, dir, "--agent=false", "--backup-dir", backups, "--backup-every", "1s", "--backup-keep", "2",
		"--backup-passphrase-file", pass)
	seen := map[string]bool{}
	waitfor.Cond(t, time.Minute, func() error {
		names, _ := filepath.Glob(filepath.Join(backups, "vpnfleet-*"+backup.Ext))
		for _, n := range names {
			seen[n] = true
		}
		if len(names) > 2 {
			return fmt.Errorf("%d backups kept, at most 2", len(names))
		}
		if len(seen) < 3 {
			return fmt.Errorf("%d backups written so far", len(seen))
		}
		return nil
	})
	if err := v.stop(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(backups, "vpnfleet-*"+backup.Ext))
	if len(names) != 2 {
		t.Fatalf("%d backups left, want 2", len(names))
	}
	for _, n := range names {
		m, err := backup.Verify(backup.OpenFile(n), "scheduled")
		if err != nil {
			t.Fatalf("scheduled backup %s: %v", n, err)
		}
		if len(m.Files) == 0 {
			t.Fatalf("scheduled backup %s holds no NATS trust", n)
		}
	}
	if _, err := backup.Verify(backup.OpenFile(names[0]), ""); errs.CodeOf(err) != backup.CodePassphrase {
		t.Fatalf("a scheduled backup opens without the passphrase: %v", err)
	}
}

func TestBadBackupSettingsStopVPNDWithOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backup-dir", t.TempDir(), "--backup-every", "10ms"}, "backup_every"},
		{[]string{"--backup-dir", t.TempDir(), "--backup-keep", "0"}, "backup_keep"},
		{[]string{"--backup-passphrase-file", "/nonexistent"}, "backup_passphrase_file"},
		{[]string{"--backup-dir", t.TempDir(), "--backup-passphrase-file", "/nonexistent"}, "backup_passphrase_file"},
	} {
		args := append([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--ops-addr", "", "--nats-listen", "", "--agent=false"}, tc.args...)
		var out syncBuffer
		err := runVPND(args, &out)
		if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("vpnd %v: %v, want one Invalid line naming %s", tc.args, err, tc.want)
		}
	}
}

func opener(b []byte) backup.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

func mustRequest(t testing.TB, a api, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	return req
}

// runVPND runs vpnd until it returns (bad settings return at once).
func runVPND(args []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return daemon.Run(ctx, args, func(string) string { return "" }, out)
}
