package gateway_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/backup"
	"github.com/vpnfleet/vpnfleet/shared/event"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// TestBackupThroughTheAPI downloads a backup as an admin: a whole file
// that verifies, whose manifest counts the users and tokens there are;
// the download is audited. Operators and viewers are refused
// (TestEveryRouteEveryRole walks that too).
func TestBackupThroughTheAPI(t *testing.T) {
	h := newHarness(t)
	for _, name := range []string{"bk-alice", "bk-bob", "bk-carol"} {
		h.createUser(name)
	}
	for _, role := range []string{"operator", "viewer"} {
		if r := h.do("POST", "/api/v1/backup", role, nil); r.status != http.StatusForbidden {
			t.Fatalf("backup as %s: %d %s", role, r.status, r)
		}
	}
	r := h.do("POST", "/api/v1/backup", "admin", nil)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/octet-stream" ||
		!strings.Contains(r.header.Get("Content-Disposition"), backup.Ext) {
		t.Fatalf("backup: %d %v", r.status, r.header)
	}
	m, err := backup.Verify(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r.body)), nil }, "")
	if err != nil {
		t.Fatalf("the downloaded backup does not verify: %v", err)
	}
	if n, _ := m.Messages("KV_" + subject.BucketUsers); n != 3 {
		t.Errorf("manifest: %d user records, want 3", n)
	}
	if n, _ := m.Messages("KV_" + subject.BucketTokens); n != 3 {
		t.Errorf("manifest: %d tokens, want 3 (admin, operator, viewer)", n)
	}
	if len(m.Files) != 0 {
		t.Errorf("a gateway without a trust dir put %d trust files in the backup", len(m.Files))
	}
	waitfor.Cond(t, 20*time.Second, func() error {
		for _, a := range h.auditOf(t, "admin") {
			if a.Action == "backup.create" && a.Result == event.AuditOK && a.Target == "backup/all" {
				return nil
			}
		}
		return errors.New("no audit record of the backup yet")
	})
}
