package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vpnfleet/vpnfleet/cli/internal/client"
	"github.com/vpnfleet/vpnfleet/cli/internal/output"
	"github.com/vpnfleet/vpnfleet/shared/backup"
	"github.com/vpnfleet/vpnfleet/shared/bus"
)

// passphraseEnv is the environment variable a passphrase may come from
// instead of --passphrase-file.
const passphraseEnv = "VPN_BACKUP_PASSPHRASE"

func (a *app) backupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up and restore everything: users, servers and their keys, tokens, jobs, nodes",
		Long: `A backup holds every stream and bucket of the installation (JetStream
snapshots, consumers included) and, from vpnd, its NATS trust (operator,
accounts, TLS CA): every secret. Encrypt it with --passphrase-file (or
VPN_BACKUP_PASSPHRASE).

create asks the gateway (admin token) and checks the file it wrote.
verify checks a file without a server. restore writes a backup into a
data dir before vpnd starts on it (--data-dir), or into a NATS cluster
before the services start (--nats-url, --nats-creds); it reads the whole
file first and writes nothing unless every check passes.`,
		Example: "  vpn backup create --passphrase-file ~/.vpn-backup-pass\n  vpn backup verify vpnfleet-20250101T000000Z.vpnbak --passphrase-file ~/.vpn-backup-pass\n  vpn backup restore vpnfleet-20250101T000000Z.vpnbak --data-dir /var/lib/vpnd --passphrase-file ~/.vpn-backup-pass",
	}
	cmd.AddCommand(a.backupCreateCmd(), a.backupVerifyCmd(), a.backupRestoreCmd())
	return cmd
}

// passphrase reads the passphrase of --passphrase-file, else of
// VPN_BACKUP_PASSPHRASE; "" when neither is set.
func (a *app) passphrase(file string) (string, error) {
	if file == "" {
		return a.env.Getenv(passphraseEnv), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", usagef("--passphrase-file: %v", err)
	}
	p := strings.TrimRight(string(b), "\r\n")
	if p == "" {
		return "", usagef("--passphrase-file %s is empty", file)
	}
	return p, nil
}

// backupSummary is what create, verify and restore print.
type backupSummary struct {
	File      string    `json:"file"`
	Encrypted bool      `json:"encrypted"`
	Version   string    `json:"product_version"`
	CreatedAt time.Time `json:"created_at"`
	Bytes     int64     `json:"bytes"`
	Users     uint64    `json:"users"`
	Servers   uint64    `json:"servers"`
	Tokens    uint64    `json:"tokens"`
	Streams   []struct {
		Name     string `json:"name"`
		Messages uint64 `json:"messages"`
		Size     int64  `json:"size"`
	} `json:"streams"`
	TrustFiles int `json:"trust_files"`
}

func summarize(file string, encrypted bool, m backup.Manifest) backupSummary {
	s := backupSummary{File: file, Encrypted: encrypted, Version: m.ProductVersion, CreatedAt: m.CreatedAt, TrustFiles: len(m.Files)}
	if st, err := os.Stat(file); err == nil {
		s.Bytes = st.Size()
	}
	s.Users, _ = m.Messages("KV_users")
	s.Servers, _ = m.Messages("KV_servers")
	s.Tokens, _ = m.Messages("KV_tokens")
	for _, st := range m.Streams {
		s.Streams = append(s.Streams, struct {
			Name     string `json:"name"`
			Messages uint64 `json:"messages"`
			Size     int64  `json:"size"`
		}{st.Name, st.Messages, st.Size})
	}
	return s
}

// printSummary prints a summary: the value with -o json|yaml, else a
// line and, unless short, a table of streams.
func (a *app) printSummary(s backupSummary, head string, table bool) error {
	p := a.printer()
	if p.Structured() {
		return p.Value(s)
	}
	if a.quiet {
		fmt.Fprintln(a.env.Stdout, s.File)
		return nil
	}
	enc := "not encrypted"
	if s.Encrypted {
		enc = "encrypted"
	}
	trust := "no NATS trust"
	if s.TrustFiles > 0 {
		trust = fmt.Sprintf("NATS trust (%d files)", s.TrustFiles)
	}
	p.Line("%s %s: %s, %s, vpnfleet %s, %s: %d users, %d servers, %d tokens, %d streams, %s",
		head, s.File, output.Bytes(s.Bytes), enc, s.Version, s.CreatedAt.UTC().Format(time.RFC3339), s.Users, s.Servers, s.Tokens, len(s.Streams), trust)
	if !table {
		return nil
	}
	rows := make([][]string, 0, len(s.Streams))
	for _, st := range s.Streams {
		rows = append(rows, []string{st.Name, fmt.Sprint(st.Messages), output.Bytes(st.Size)})
	}
	return p.Table([]string{"STREAM", "MESSAGES", "SNAPSHOT"}, rows)
}

func (a *app) backupCreateCmd() *cobra.Command {
	var passFile string
	var force bool
	cmd := &cobra.Command{
		Use:   "create [FILE]",
		Short: "Download a backup of everything from the gateway (admin) and check it",
		Long: `Writes FILE (default vpnfleet-<UTC time>.vpnbak here), encrypted when a
passphrase is given, then reads it back in full and checks every checksum
before naming it: a file that exists is a complete backup.`,
		Example: "  vpn backup create\n  vpn backup create /backups/today.vpnbak --passphrase-file ~/.vpn-backup-pass",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			pass, err := a.passphrase(passFile)
			if err != nil {
				return err
			}
			file := "vpnfleet-" + time.Now().UTC().Format("20060102T150405Z") + backup.Ext
			if len(argv) == 1 {
				file = argv[0]
			}
			if _, err := os.Stat(file); err == nil && !force {
				return usagef("%s exists; name another file, or --force to replace it", file)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			m, err := a.download(cmd.Context(), c, file, pass)
			if err != nil {
				return err
			}
			return a.printSummary(summarize(file, pass != "", m), "backup written to", false)
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "encrypt with the passphrase in this file (default: "+passphraseEnv+"; neither: not encrypted)")
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

// download streams the gateway's backup into a temporary file beside
// file (encrypting it as it arrives), checks it in full, and renames it.
func (a *app) download(ctx context.Context, c *client.Client, file, pass string) (backup.Manifest, error) {
	resp, err := c.Send(ctx, client.Request{Method: http.MethodPost, Path: "/api/v1/backup", Header: http.Header{"Accept": {"application/octet-stream"}}})
	if err != nil {
		return backup.Manifest{}, err
	}
	defer resp.Body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(file), ".vpnbak-*")
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("writing backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	var w io.Writer = tmp
	var enc io.WriteCloser
	if pass != "" {
		if enc, err = backup.Encrypt(tmp, pass, a.env.BackupWorkFactor); err != nil {
			tmp.Close()
			return backup.Manifest{}, err
		}
		w = enc
	}
	_, err = io.Copy(w, resp.Body)
	if err == nil && enc != nil {
		err = enc.Close()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("downloading backup: %w", err)
	}
	m, err := backup.Verify(backup.OpenFile(tmp.Name()), pass)
	if err != nil {
		return backup.Manifest{}, fmt.Errorf("the backup the gateway sent does not check out, nothing written: %w", err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return backup.Manifest{}, fmt.Errorf("naming backup %s: %w", file, err)
	}
	return m, nil
}

// encrypted reports whether a backup file is encrypted.
func encrypted(file string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	_, enc, _ := backup.Plaintext(f, "")
	return enc
}

func (a *app) backupVerifyCmd() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:     "verify FILE",
		Short:   "Check a backup file in full (checksums, manifest, version, every stream); no server needed",
		Example: "  vpn backup verify vpnfleet-20250101T000000Z.vpnbak\n  vpn backup verify today.vpnbak --passphrase-file ~/.vpn-backup-pass -o json",
		Args:    args(1, "one backup file"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			pass, err := a.passphrase(passFile)
			if err != nil {
				return err
			}
			m, err := backup.Verify(backup.OpenFile(argv[0]), pass)
			if err != nil {
				return fmt.Errorf("%s: %w", argv[0], err)
			}
			return a.printSummary(summarize(argv[0], encrypted(argv[0]), m), "backup", true)
		},
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "the passphrase of an encrypted backup (default: "+passphraseEnv+")")
	return cmd
}

func (a *app) backupRestoreCmd() *cobra.Command {
	var passFile, dataDir, natsURL, natsCreds, natsCA string
	var force bool
	var replicas int
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into an empty data dir (before vpnd starts) or NATS cluster (before the services start)",
		Long: `Reads the whole file and checks it first: a corrupt or truncated file, a
wrong passphrase, a missing stream or a backup of a newer version is
refused with one line, and nothing is written. A target that holds data
is refused too, unless --force: a data dir's nats/ and jetstream/ are then
moved aside (nothing is deleted), a cluster's streams are replaced.

--data-dir: the backup's NATS trust (when it was made by vpnd) is restored
with the streams, so agents on other hosts keep their credentials and
pinned CA; then start vpnd on that data dir (with the same --node-id when
this is another host). --nats-url: the cluster keeps its own trust.`,
		Example: "  vpn backup restore today.vpnbak --data-dir /var/lib/vpnd --passphrase-file ~/.vpn-backup-pass\n  vpn backup restore today.vpnbak --nats-url tls://nats-1:4222 --nats-creds service.creds --nats-ca ca.pem --replicas 3",
		Args:    args(1, "one backup file"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if (dataDir == "") == (natsURL == "") {
				return usagef("restore needs exactly one target: --data-dir (vpnd, stopped) or --nats-url (a cluster)")
			}
			if natsURL != "" && natsCreds == "" {
				return usagef("--nats-url needs --nats-creds (the service credential)")
			}
			if replicas < 0 || replicas > 5 {
				return usagef("--replicas must be 1-5 (0 keeps the backup's)")
			}
			pass, err := a.passphrase(passFile)
			if err != nil {
				return err
			}
			opts := backup.RestoreOptions{Passphrase: pass, Force: force, Replicas: replicas}
			file := argv[0]
			var m backup.Manifest
			target := dataDir
			if dataDir != "" {
				m, err = backup.RestoreDataDir(cmd.Context(), dataDir, backup.OpenFile(file), opts)
			} else {
				target = natsURL
				m, err = a.restoreToCluster(cmd.Context(), file, natsURL, natsCreds, natsCA, opts)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			if err := a.printSummary(summarize(file, encrypted(file), m), "restored", false); err != nil {
				return err
			}
			switch {
			case dataDir != "" && len(m.Files) == 0:
				a.info("into %s with a new NATS trust (the backup holds none): agents on other hosts must join again (`vpn nodes add`). Start vpnd with --data-dir %s.", target, dataDir)
			case dataDir != "":
				a.info("into %s. Start vpnd with --data-dir %s.", target, dataDir)
			default:
				a.info("into %s (its own NATS trust is kept). Start the services.", target)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&passFile, "passphrase-file", "", "the passphrase of an encrypted backup (default: "+passphraseEnv+")")
	f.StringVar(&dataDir, "data-dir", "", "restore into this vpnd data dir (vpnd stopped)")
	f.StringVar(&natsURL, "nats-url", "", "restore into this NATS cluster (services stopped)")
	f.StringVar(&natsCreds, "nats-creds", "", "service credentials file for --nats-url")
	f.StringVar(&natsCA, "nats-ca", "", "CA certificate (PEM) of --nats-url's TLS")
	f.BoolVar(&force, "force", false, "replace what the target holds (a data dir's nats/ and jetstream/ are moved aside)")
	f.IntVar(&replicas, "replicas", 0, "replicas of every restored stream (0: as in the backup)")
	return cmd
}

// restoreToCluster connects with the service credential and restores.
func (a *app) restoreToCluster(ctx context.Context, file, url, creds, ca string, opts backup.RestoreOptions) (backup.Manifest, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, err := bus.Dial(dctx, bus.DialConfig{URL: url, Creds: creds, CA: ca, Name: "vpn-backup-restore"}, slog.New(slog.DiscardHandler))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return backup.Manifest{}, fmt.Errorf("connecting to %s: no answer within 30s", url)
		}
		return backup.Manifest{}, err
	}
	defer nc.Close()
	return backup.Restore(ctx, nc, backup.OpenFile(file), opts)
}
