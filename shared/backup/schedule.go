package backup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// filePrefix starts the name of every scheduled backup; pruning touches
// no other file.
const filePrefix = "vpnfleet-"

// WriteFile writes one backup into dir as vpnfleet-<UTC time>.vpnbak:
// to a temporary file, synced, then renamed, so a crash never leaves half
// a backup under a backup's name. It returns the file's path.
func WriteFile(ctx context.Context, nc *nats.Conn, dir string, opts Options) (string, Manifest, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", Manifest{}, errs.Wrap(errs.Invalid, err, "backup dir %s", dir)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	at := now().UTC()
	opts.Now = func() time.Time { return at }
	name := filePrefix + at.Format("20060102T150405.000Z") + Ext
	tmp, err := os.CreateTemp(dir, ".backup-*")
	if err != nil {
		return "", Manifest{}, errs.Wrap(errs.Invalid, err, "backup dir %s", dir)
	}
	defer os.Remove(tmp.Name())
	m, err := Create(ctx, nc, tmp, opts)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", Manifest{}, err
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", Manifest{}, fmt.Errorf("naming backup %s: %w", path, err)
	}
	return path, m, nil
}

// Prune removes the oldest scheduled backups in dir beyond keep and
// returns what it removed. Files not named by WriteFile are left alone.
func Prune(dir string, keep int) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing backups in %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), filePrefix) && strings.HasSuffix(e.Name(), Ext) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names) // the UTC time in the name sorts them by age
	var removed []string
	for len(names) > keep {
		p := filepath.Join(dir, names[0])
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("removing old backup: %w", err)
		}
		removed = append(removed, p)
		names = names[1:]
	}
	return removed, nil
}

// Schedule takes a backup every Every into Dir and keeps the newest Keep.
type Schedule struct {
	Dir   string
	Every time.Duration
	Keep  int
	// Options are those of every backup (trust dir, passphrase).
	Options Options
	Log     *slog.Logger
}

// Run takes backups until ctx ends. A failed backup is logged and tried
// again at the next tick; it never stops the process.
func (s Schedule) Run(ctx context.Context, nc *nats.Conn) error {
	t := time.NewTicker(s.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		start := time.Now()
		path, m, err := WriteFile(ctx, nc, s.Dir, s.Options)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.Log.Error("scheduled backup failed", logkey.Path, s.Dir, logkey.Err, err)
			continue
		}
		s.Log.Info("backup written", logkey.Path, path, logkey.Count, len(m.Streams), logkey.Duration, time.Since(start))
		removed, err := Prune(s.Dir, s.Keep)
		if err != nil {
			s.Log.Error("pruning backups", logkey.Path, s.Dir, logkey.Err, err)
		}
		for _, p := range removed {
			s.Log.Info("old backup removed", logkey.Path, p)
		}
	}
}
