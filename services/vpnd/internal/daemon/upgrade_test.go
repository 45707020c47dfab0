package daemon_test

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// testdata/datadir-0.1.tar.gz is a data dir written by the release before
// the desired/observed split and before authentication (commit 99db928's
// vpnd, --agent=false): an admin token, a user "legacy" with traffic
// counted from node n1 (up 1234, down 5678, window 1) and a server on n1
// whose agent reported it applied at 203.0.113.7. No keys, no creds.
const (
	legacyUser   = "e07ce6ac-0170-4668-aeaf-32e213614dca"
	legacyServer = "8741f7d7-3156-48be-881b-4c31d33cf872"
)

// TestUpgradesADataDirOfThePreviousRelease: today's vpnd opens that data
// dir without losing a user, a counter or a server's status: the store is
// adopted by the authenticated account, counters move to the usage
// bucket, the report to server_status, and the API shows them as before.
func TestUpgradesADataDirOfThePreviousRelease(t *testing.T) {
	dir := t.TempDir()
	untar(t, "testdata/datadir-0.1.tar.gz", dir)
	v := start(t, dir, "--agent=false")
	waitReady(t, v.GatewayURL)
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	var u user.User
	getJSON(t, v.GatewayURL+"/api/v1/users/legacy", strings.TrimSpace(string(token)), &u)
	if u.ID != legacyUser || u.Credentials.SOCKS5 == nil || u.Credentials.SOCKS5.Password == "" {
		t.Fatalf("user after the upgrade: %+v", u)
	}
	if c := u.Usage; c.UsedUp != 1234 || c.UsedDown != 5678 || c.LifetimeUp != 1234 || c.LifetimeDown != 5678 || c.FirstUsedAt.IsZero() {
		t.Fatalf("counters after the upgrade: %+v", c)
	}
	var s server.Server
	getJSON(t, v.GatewayURL+"/api/v1/servers/"+legacyServer, strings.TrimSpace(string(token)), &s)
	if s.Node != "n1" || s.Status.State != server.StateApplied || s.Status.PublicHost != "203.0.113.7" {
		t.Fatalf("server after the upgrade: node %s, status %+v", s.Node, s.Status)
	}
	if _, err := os.Stat(filepath.Join(dir, "nats", "service.creds")); err != nil {
		t.Fatalf("no service credential after the upgrade: %v", err)
	}
}

func getJSON(t *testing.T, url, token string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d: %s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decoding %s: %v", url, err)
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, h.Name)
		if !strings.HasPrefix(path, filepath.Clean(dir)+string(os.PathSeparator)) && path != filepath.Clean(dir) {
			t.Fatal(fmt.Errorf("archive entry %s escapes %s", h.Name, dir))
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o700)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			out.Close()
		}
	}
}
