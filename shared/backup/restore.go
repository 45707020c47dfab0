package backup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
)

// Opener opens the backup file; a restore reads it twice (once to check
// everything, once to restore), so it must give the same bytes each time.
type Opener func() (io.ReadCloser, error)

// OpenFile is the Opener of a file on disk.
func OpenFile(path string) Opener {
	return func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "opening backup")
		}
		return f, nil
	}
}

// RestoreOptions tunes a restore.
type RestoreOptions struct {
	// Passphrase decrypts an encrypted backup.
	Passphrase string
	// Force replaces what the target holds instead of refusing it.
	Force bool
	// Replicas, when set, replaces each stream's replica count (a backup
	// of a 3-node cluster restored on one machine takes 1).
	Replicas int
	// Required are the streams the backup must hold; nil: Required().
	Required []string
	// Log receives the embedded server's lines of RestoreDataDir (nil:
	// none).
	Log *slog.Logger
}

// maxTrust bounds the NATS trust files kept in memory between the check
// and the restore.
const maxTrust = 4 << 20

// Verify reads the whole backup and checks everything a restore checks
// about the file; nothing is written anywhere.
func Verify(open Opener, passphrase string) (Manifest, error) {
	m, _, err := verify(open, passphrase, Required(), false)
	return m, err
}

// verify is the first pass of a restore: the whole file, decrypted and
// checked; with keep it returns the trust files' contents too.
func verify(open Opener, passphrase string, required []string, keep bool) (Manifest, map[string][]byte, error) {
	files := map[string][]byte{}
	total := 0
	var visit Visit
	if keep {
		visit = func(s Section, r io.Reader) error {
			if s.Kind != KindFile {
				_, err := io.Copy(io.Discard, r)
				return err
			}
			b, err := io.ReadAll(io.LimitReader(r, maxTrust+1))
			if total += len(b); total > maxTrust {
				return corrupt("nats trust files exceed %d bytes", maxTrust)
			}
			files[s.Name] = b
			return err
		}
	}
	m, err := decodeFile(open, passphrase, required, visit)
	return m, files, err
}

// decodeFile opens, decrypts and decodes the file once.
func decodeFile(open Opener, passphrase string, required []string, visit Visit) (Manifest, error) {
	f, err := open()
	if err != nil {
		return Manifest{}, err
	}
	defer f.Close()
	r, _, err := Plaintext(f, passphrase)
	if err != nil {
		return Manifest{}, err
	}
	return Decode(r, required, visit)
}

// Restore restores a backup into the JetStream reached by nc (a service
// credential of the product's account), e.g. a NATS cluster before the
// services start. The file is checked in full first; a target whose
// streams hold any message is refused (CodeNotEmpty) unless Force, which
// deletes them. Streams that exist but are empty (provisioned by a
// service start) are replaced. The NATS trust in the backup, if any, is
// not touched: a cluster keeps its own operator.
func Restore(ctx context.Context, nc *nats.Conn, open Opener, opts RestoreOptions) (Manifest, error) {
	required := opts.Required
	if required == nil {
		required = Required()
	}
	m, _, err := verify(open, opts.Passphrase, required, false)
	if err != nil {
		return Manifest{}, err
	}
	existing, err := checkTarget(ctx, nc, m, opts.Force)
	if err != nil {
		return Manifest{}, err
	}
	return m, restoreStreams(ctx, nc, open, m, existing, opts)
}

// checkTarget lists the backup's streams that exist in the target and
// refuses the target when one holds a message, unless force.
func checkTarget(ctx context.Context, nc *nats.Conn, m Manifest, force bool) ([]string, error) {
	var existing, full []string
	for _, s := range m.Streams {
		st, ok, err := streamInfo(ctx, nc, s.Name)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		existing = append(existing, s.Name)
		if st.Messages > 0 {
			full = append(full, fmt.Sprintf("%s (%d messages)", s.Name, st.Messages))
		}
	}
	if len(full) > 0 && !force {
		if len(full) > 3 {
			full = append(full[:3], fmt.Sprintf("and %d more", len(full)-3))
		}
		return nil, errs.WithCode(errs.New(errs.Conflict,
			"restore target is not empty: %s; restore into an empty data dir or cluster, or pass --force to replace what it holds",
			strings.Join(full, ", ")), CodeNotEmpty)
	}
	return existing, nil
}

// restoreStreams is the second pass: delete what is replaced, then send
// every stream section to the server.
func restoreStreams(ctx context.Context, nc *nats.Conn, open Opener, m Manifest, existing []string, opts RestoreOptions) error {
	for _, name := range existing {
		if err := deleteStream(ctx, nc, name); err != nil {
			return err
		}
	}
	byName := map[string]Stream{}
	for _, s := range m.Streams {
		byName[s.Name] = s
	}
	_, err := decodeFile(open, opts.Passphrase, nil, func(s Section, r io.Reader) error {
		if s.Kind != KindStream {
			_, err := io.Copy(io.Discard, r)
			return err
		}
		entry, ok := byName[s.Name]
		if !ok {
			return corrupt("stream %s changed between reading and restoring the file", s.Name)
		}
		return restoreStream(ctx, nc, entry, opts.Replicas, r)
	})
	return err
}

// Layout of a data dir (see services/vpnd): the embedded server's trust
// and its JetStream store.
const (
	TrustDir = "nats"
	StoreDir = "jetstream"
)

// RestoreDataDir restores a backup into vpnd's data dir dir, before vpnd
// starts on it. The file is checked in full first. A data dir that already
// holds a NATS trust or a JetStream store is refused (CodeNotEmpty) unless
// Force, which moves both aside to <name>.before-restore-<time> (nothing
// is deleted; the local agent's state in <dir>/agent stays, so it adopts
// the servers it runs). The backup's NATS trust, when it carries one, is
// written to <dir>/nats first, so agents on other hosts keep their
// credentials and their pinned CA; without one a new trust is made and
// remote agents must join again. Then an embedded server on dir receives
// every stream and stops.
func RestoreDataDir(ctx context.Context, dir string, open Opener, opts RestoreOptions) (Manifest, error) {
	required := opts.Required
	if required == nil {
		required = Required()
	}
	m, files, err := verify(open, opts.Passphrase, required, true)
	if err != nil {
		return Manifest{}, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Manifest{}, errs.Wrap(errs.Invalid, err, "data dir %s", dir)
	}
	var held []string
	for _, name := range []string{TrustDir, StoreDir} {
		if nonEmptyDir(filepath.Join(abs, name)) {
			held = append(held, name+"/")
		}
	}
	if len(held) > 0 {
		if !opts.Force {
			return Manifest{}, errs.WithCode(errs.New(errs.Conflict,
				"restore target is not empty: data dir %s already holds %s; restore into an empty data dir, or pass --force to move them aside",
				abs, strings.Join(held, " and ")), CodeNotEmpty)
		}
		stamp := time.Now().UTC().Format("20060102T150405Z")
		for _, name := range held {
			name = strings.TrimSuffix(name, "/")
			from := filepath.Join(abs, name)
			if err := os.Rename(from, from+".before-restore-"+stamp); err != nil {
				return Manifest{}, fmt.Errorf("moving %s aside: %w", from, err)
			}
		}
	}
	trustDir := filepath.Join(abs, TrustDir)
	if err := writeTrust(trustDir, m, files); err != nil {
		return Manifest{}, err
	}
	trust, err := natsauth.LoadOrCreate(trustDir)
	if err != nil {
		return Manifest{}, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// No fsync per message while restoring (ten times slower): the store
	// is synced once, file by file, after the server stopped; a restore
	// cut short is redone whole anyway.
	srv, err := natsserver.Start(natsserver.Config{DataDir: abs, ServerName: "vpnd-restore", Trust: trust, SyncInterval: time.Minute}, log)
	if err != nil {
		return Manifest{}, err
	}
	defer srv.Shutdown()
	nc, err := srv.Connect(nats.Name("vpn-backup-restore"))
	if err != nil {
		return Manifest{}, errs.Wrap(errs.Unavailable, err, "connecting to the embedded server")
	}
	defer nc.Close()
	if err := restoreStreams(ctx, nc, open, m, nil, opts); err != nil {
		return Manifest{}, err
	}
	nc.Close()
	srv.Shutdown()
	if err := syncTree(filepath.Join(abs, StoreDir)); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// syncTree fsyncs every file and directory below dir, so that what the
// restoring server wrote survives a power loss.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("syncing the restored store: %w", err)
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing the restored store: %w", err)
		}
		return nil
	})
}

// nonEmptyDir reports whether p is a directory with at least one entry.
func nonEmptyDir(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	names, _ := f.Readdirnames(1)
	return len(names) > 0
}

// writeTrust writes the backup's trust files into dir (0700, files 0600).
func writeTrust(dir string, m Manifest, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	for _, f := range m.Files {
		data, ok := files[f.Path]
		if !ok {
			return corrupt("file %s has no content", f.Path)
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			return corrupt("file path %q leaves the trust directory", f.Path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", filepath.Dir(p), err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
