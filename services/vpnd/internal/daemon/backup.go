package daemon

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/backup"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// trustDir is the embedded server's trust directory, which backups carry
// so that a restore into a fresh data dir keeps the operator, the
// accounts (and their revocations) and the CA agents pin; "" with
// --nats-url, where the cluster keeps its own.
func trustDir(cfg Config) string {
	if cfg.NATSURL != "" {
		return ""
	}
	return filepath.Join(cfg.DataDir, natsDir)
}

// backupSchedule is the scheduled backups of --backup-dir, or nil. The
// passphrase file is read here, so a missing or empty one stops vpnd at
// start with one line instead of failing every backup later.
func backupSchedule(cfg Config, env svc.Env) (*backup.Schedule, error) {
	if cfg.BackupDir == "" {
		return nil, nil
	}
	dir, err := filepath.Abs(cfg.BackupDir)
	if err != nil {
		return nil, errs.Field("backup_dir", err.Error())
	}
	opts := backup.Options{TrustDir: trustDir(cfg)}
	if cfg.BackupPassphraseFile != "" {
		b, err := os.ReadFile(cfg.BackupPassphraseFile)
		if err != nil {
			return nil, errs.Field("backup_passphrase_file", "cannot be read: "+unwrap(err).Error())
		}
		if opts.Passphrase = strings.TrimRight(string(b), "\r\n"); opts.Passphrase == "" {
			return nil, errs.Field("backup_passphrase_file", "is empty")
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errs.Field("backup_dir", "cannot be created: "+unwrap(err).Error())
	}
	return &backup.Schedule{Dir: dir, Every: cfg.BackupEvery, Keep: cfg.BackupKeep, Options: opts,
		Log: env.Log.With(logkey.Component, "backup")}, nil
}
