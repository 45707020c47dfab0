package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/backup"
)

// backup streams a backup of every stream and bucket (and, under vpnd,
// the embedded server's NATS trust) as the response body. The file holds
// every secret of the installation, so the route is for admins only and
// each call is audited; the CLI encrypts it with the operator's
// passphrase as it arrives, and checks it in full once it is written: an
// error after the first byte can only cut the body short, which that
// check refuses.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) error {
	setTarget(r, "backup", "all")
	name := "vpnfleet-" + time.Now().UTC().Format("20060102T150405Z") + backup.Ext
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	w.Header().Set("Cache-Control", "no-store")
	_, err := backup.Create(r.Context(), s.env.NC, w, backup.Options{TrustDir: s.cfg.BackupTrustDir})
	return err
}
