package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/health"
	agent "github.com/vpnfleet/vpnfleet/services/runtime-agent"
	"github.com/vpnfleet/vpnfleet/services/users"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/svc"
)

// Config is vpnd's configuration. Flags, env (VPN_*) and an optional TOML
// file fill it; see config.Load for precedence.
type Config struct {
	DataDir       string        `flag:"data-dir" env:"VPN_DATA_DIR" help:"directory for the JetStream store and local state"`
	HTTPAddr      string        `flag:"http-addr" env:"VPN_HTTP_ADDR" help:"address of the HTTP API (gateway)"`
	OpsAddr       string        `flag:"ops-addr" env:"VPN_OPS_ADDR" help:"address serving /metrics, /healthz and /readyz for operators (empty: none); keep it off the public network"`
	Pprof         bool          `flag:"pprof" env:"VPN_PPROF" help:"also serve Go's profiles (/debug/pprof/) on the ops listener"`
	NATSURL       string        `flag:"nats-url" env:"VPN_NATS_URL" help:"use this external NATS (cluster) instead of the embedded server"`
	NATSCreds     string        `flag:"nats-creds" env:"VPN_NATS_CREDS" help:"NATS credentials file for --nats-url"`
	NATSCA        string        `flag:"nats-ca" env:"VPN_NATS_CA" help:"CA certificate (PEM) of --nats-url's TLS, trusted instead of public CAs"`
	NATSListen    string        `flag:"nats-listen" env:"VPN_NATS_LISTEN" help:"client address of the embedded NATS server, so agents on other hosts can join (empty: in-process only)"`
	NATSTLS       string        `flag:"nats-tls" env:"VPN_NATS_TLS" help:"TLS on the embedded NATS listener: auto (on unless --nats-listen is loopback), on, or off (loopback only)"`
	NATSAdvertise []string      `flag:"nats-advertise" env:"VPN_NATS_ADVERTISE" help:"host names or IPs other hosts dial to reach the embedded NATS server; its TLS certificate names them"`
	SyncInterval  time.Duration `flag:"nats-sync-interval" env:"VPN_NATS_SYNC_INTERVAL" help:"embedded JetStream fsync interval; 0 syncs before every acknowledgement (durable)"`
	Replicas      int           `flag:"replicas" env:"VPN_REPLICAS" help:"replicas of streams and buckets (1 here; 3 on a NATS cluster)"`
	StartTimeout  time.Duration `flag:"start-timeout" env:"VPN_START_TIMEOUT" help:"how long start-up waits for NATS (--nats-url's first connection, provisioning), retrying with backoff, before it gives up"`
	LogLevel      string        `flag:"log-level" env:"VPN_LOG_LEVEL" help:"debug, info, warn or error"`
	OTLPEndpoint  string        `flag:"otlp-endpoint" env:"OTEL_EXPORTER_OTLP_ENDPOINT" help:"OTLP/HTTP trace endpoint (empty: tracing off)"`
	// Scheduled backups: every BackupEvery into BackupDir, the newest
	// BackupKeep kept (see shared/backup).
	BackupDir            string        `flag:"backup-dir" env:"VPN_BACKUP_DIR" help:"write a backup of everything (streams, buckets, NATS trust) into this directory on a schedule (empty: no scheduled backups)"`
	BackupEvery          time.Duration `flag:"backup-every" env:"VPN_BACKUP_EVERY" help:"interval of scheduled backups"`
	BackupKeep           int           `flag:"backup-keep" env:"VPN_BACKUP_KEEP" help:"scheduled backups kept in --backup-dir; older ones are removed"`
	BackupPassphraseFile string        `flag:"backup-passphrase-file" env:"VPN_BACKUP_PASSPHRASE_FILE" help:"encrypt scheduled backups with the passphrase in this file (empty: not encrypted)"`
	// Agent is the local agent, which makes this host a node of the fleet.
	Agent     bool         `flag:"agent" env:"VPN_AGENT" help:"run a local agent so this host serves VPN users too"`
	AgentNode agent.Config // its flags: --node-id, --runtime, --public-addr, ...
	// AgentGroups are the groups the local node is enrolled with.
	AgentGroups []string `flag:"agent-groups" env:"VPN_AGENT_GROUPS" help:"node groups of this host's own node (users placed on a group are served by its nodes), comma-separated"`
	// Health is the health core: node health, alert rules, notifiers.
	Health health.Config // its flags: --alert-rules, --node-down-after, ...
	// Gateway is the HTTP API: --public-url, --trusted-proxies,
	// --rate-limit, --upstream-timeout, ... Its --http-addr is vpnd's own
	// (one flag sets both); its admin token file defaults to
	// <data-dir>/admin.token.
	Gateway gateway.Config
	// Users is the user registry: --job-workers, --job-batch,
	// --request-timeout, ... (--job-timeout is one setting with the
	// gateway's). Its Fleet is vpnd's own signing authority, set at start.
	Users users.Config
}

// Defaults returns vpnd's defaults: data in ./data, the API on
// 127.0.0.1:8080, the ops endpoint (metrics) on 127.0.0.1:9100, the
// embedded NATS on 127.0.0.1:4222, durable sync.
func Defaults() Config {
	return Config{
		DataDir:      "./data",
		HTTPAddr:     "127.0.0.1:8080",
		OpsAddr:      "127.0.0.1:9100",
		NATSListen:   "127.0.0.1:4222",
		NATSTLS:      TLSAuto,
		Replicas:     1,
		StartTimeout: svc.DefaultStartTimeout,
		LogLevel:     "info",
		BackupEvery:  24 * time.Hour,
		BackupKeep:   7,
		Agent:        true,
		AgentNode:    localAgentDefaults(),
		Health:       health.Defaults(),
		Gateway:      gateway.Defaults(),
		Users:        users.Defaults(),
	}
}

// Validate checks fields on their own; the data dir is checked by
// prepareDataDir because that touches the disk.
func (c *Config) Validate() error {
	var fe []errs.FieldError
	if c.DataDir == "" {
		fe = append(fe, errs.FieldError{Field: "data_dir", Rule: "must be set"})
	}
	if c.HTTPAddr == "" {
		fe = append(fe, errs.FieldError{Field: "http_addr", Rule: "must be set"})
	}
	if c.SyncInterval < 0 {
		fe = append(fe, errs.FieldError{Field: "nats_sync_interval", Rule: "must not be negative"})
	}
	if c.BackupDir != "" && c.BackupEvery < time.Second {
		fe = append(fe, errs.FieldError{Field: "backup_every", Rule: "must be at least 1s"})
	}
	if c.BackupKeep < 1 {
		fe = append(fe, errs.FieldError{Field: "backup_keep", Rule: "must be at least 1"})
	}
	if c.BackupPassphraseFile != "" && c.BackupDir == "" {
		fe = append(fe, errs.FieldError{Field: "backup_passphrase_file", Rule: "needs backup_dir"})
	}
	if c.Replicas != 1 && c.Replicas != 3 && c.Replicas != 5 {
		fe = append(fe, errs.FieldError{Field: "replicas", Rule: "must be 1, 3 or 5"})
	}
	if c.StartTimeout <= 0 {
		fe = append(fe, errs.FieldError{Field: "start_timeout", Rule: "must be positive"})
	}
	if c.Pprof && c.OpsAddr == "" {
		fe = append(fe, errs.FieldError{Field: "pprof", Rule: "needs the ops listener (--ops-addr)"})
	}
	if c.NATSURL == "" && c.Replicas != 1 {
		fe = append(fe, errs.FieldError{Field: "replicas", Rule: "must be 1 with the embedded NATS server (use --nats-url for a cluster)"})
	}
	switch c.NATSTLS {
	case TLSAuto, TLSOn:
	case TLSOff:
		if c.NATSURL == "" && c.NATSListen != "" && !listenIsLoopback(c.NATSListen) {
			fe = append(fe, errs.FieldError{Field: "nats_tls", Rule: "off is refused: nats_listen " + c.NATSListen +
				" is reachable from other hosts, and credentials and user secrets would cross the network in clear"})
		}
	default:
		fe = append(fe, errs.FieldError{Field: "nats_tls", Rule: "must be auto, on or off"})
	}
	groups := []error{c.Health.Validate(), c.Gateway.Validate(), c.Users.Validate()}
	if c.Agent {
		groups = append(groups, c.AgentNode.Validate())
	}
	for _, err := range groups {
		if err == nil {
			continue
		}
		fields := errs.FieldsOf(err)
		if len(fields) == 0 {
			return err
		}
		fe = append(fe, fields...)
	}
	return errs.Fields(fe...)
}

// Values of NATSTLS.
const (
	TLSAuto = "auto"
	TLSOn   = "on"
	TLSOff  = "off"
)

// natsTLS reports whether the embedded server's listener uses TLS: when
// asked, and always when it is reachable from other hosts.
func (c *Config) natsTLS() bool {
	if c.NATSListen == "" {
		return false
	}
	switch c.NATSTLS {
	case TLSOn:
		return true
	case TLSOff:
		return false
	}
	return !listenIsLoopback(c.NATSListen)
}

// listenIsLoopback reports whether a host:port listens on loopback only.
// A malformed address is not loopback (the server rejects it anyway).
func listenIsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	return err == nil && natsauth.IsLoopback(host)
}

// localAgentDefaults are the agent's defaults with one change: on the one
// machine vpnd runs on, workloads are supervised processes unless the
// operator picks a container runtime (--runtime docker|containerd|auto).
func localAgentDefaults() agent.Config {
	c := agent.DefaultConfig()
	c.Runtime = "process"
	return c
}

// prepareDataDir creates the data dir (0700) and proves it is writable, so
// an unusable dir fails at start with one clear line instead of deep inside
// JetStream.
func prepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", errs.New(errs.Invalid, "data dir %s: %v", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", errs.New(errs.Invalid, "data dir %s cannot be created: %v", abs, unwrap(err))
	}
	f, err := os.CreateTemp(abs, ".write-test-*")
	if err != nil {
		return "", errs.New(errs.Invalid, "data dir %s is not writable: %v", abs, unwrap(err))
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return "", fmt.Errorf("removing %s: %w", name, err)
	}
	return abs, nil
}

func unwrap(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
