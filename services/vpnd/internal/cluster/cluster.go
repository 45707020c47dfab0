// Package cluster writes what a NATS cluster of the fleet runs on: the
// operator and its accounts (natsauth.Trust), a private CA and a server
// certificate naming every node, one nats-server configuration per node
// (clustered JetStream, TLS for clients and routes, the full account
// resolver preloaded with both accounts), service credentials for the
// standalone services, and the signer directory the users service mints
// node and join credentials with (the account signing key, never the
// operator's).
//
// It is `vpn-cluster init` (cmd/vpn-cluster). It runs once, offline, on
// the operator's machine; a second run over the same directory keeps every
// key and rewrites the rest, so it also renews what it writes.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Options is what `vpn-cluster init` takes.
type Options struct {
	Dir        string   `flag:"dir" env:"VPN_CLUSTER_DIR" help:"directory to write the cluster's keys, configs and credentials into (kept 0700)"`
	Nodes      int      `flag:"nodes" env:"VPN_CLUSTER_NODES" help:"NATS servers in the cluster: 3 or 5 (JetStream needs a majority up)"`
	Hosts      []string `flag:"hosts" env:"VPN_CLUSTER_HOSTS" help:"host name or IP of each NATS server, as the others and every client dial it (comma-separated, one per node; default nats-1,nats-2,...)"`
	Name       string   `flag:"name" env:"VPN_CLUSTER_NAME" help:"cluster name"`
	ClientPort int      `flag:"client-port" env:"VPN_CLUSTER_CLIENT_PORT" help:"client port of every server (TLS)"`
	RoutePort  int      `flag:"route-port" env:"VPN_CLUSTER_ROUTE_PORT" help:"route port of every server (TLS, with a cluster password)"`
	Monitor    int      `flag:"monitor-port" env:"VPN_CLUSTER_MONITOR_PORT" help:"HTTP monitoring port (/healthz, /varz) of every server; 0: none"`
	ConfigRoot string   `flag:"config-root" env:"VPN_CLUSTER_CONFIG_ROOT" help:"where <dir>/nats is found by the servers (the path a container mounts it at)"`
	StoreDir   string   `flag:"store-dir" env:"VPN_CLUSTER_STORE_DIR" help:"data directory of every server (JetStream and its account store)"`
}

// Defaults are the options of the reference deployment (deploy/cluster):
// three servers named nats-1..3, the standard ports, the configuration
// mounted at /etc/nats and the data at /data.
func Defaults() Options {
	return Options{Nodes: 3, Name: "vpnfleet", ClientPort: 4222, RoutePort: 6222, Monitor: 8222,
		ConfigRoot: "/etc/nats", StoreDir: "/data"}
}

// Validate checks the options and fills the default hosts.
func (o *Options) Validate() error {
	var fe []errs.FieldError
	if o.Dir == "" {
		fe = append(fe, errs.FieldError{Field: "dir", Rule: "must be set"})
	}
	if o.Nodes != 3 && o.Nodes != 5 {
		fe = append(fe, errs.FieldError{Field: "nodes", Rule: "must be 3 or 5"})
	}
	if len(o.Hosts) == 0 && (o.Nodes == 3 || o.Nodes == 5) {
		for i := range o.Nodes {
			o.Hosts = append(o.Hosts, fmt.Sprintf("nats-%d", i+1))
		}
	}
	if len(o.Hosts) != o.Nodes {
		fe = append(fe, errs.FieldError{Field: "hosts", Rule: fmt.Sprintf("must name one host per node (%d), got %d", o.Nodes, len(o.Hosts))})
	}
	seen := map[string]bool{}
	for i, h := range o.Hosts {
		switch {
		case !validHost(h):
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("hosts[%d]", i), Rule: "must be a host name or an IP address"})
		case seen[h]:
			fe = append(fe, errs.FieldError{Field: fmt.Sprintf("hosts[%d]", i), Rule: "must not repeat a host"})
		}
		seen[h] = true
	}
	if !subject.ValidToken(o.Name) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: "must be 1-128 characters of A-Z a-z 0-9 _ -"})
	}
	for _, p := range []struct {
		field string
		port  int
		zero  bool
	}{{"client_port", o.ClientPort, false}, {"route_port", o.RoutePort, false}, {"monitor_port", o.Monitor, true}} {
		if (p.port != 0 || !p.zero) && (p.port < 1 || p.port > 65535) {
			fe = append(fe, errs.FieldError{Field: p.field, Rule: "must be 1-65535"})
		}
	}
	if o.ClientPort == o.RoutePort || (o.Monitor != 0 && (o.Monitor == o.ClientPort || o.Monitor == o.RoutePort)) {
		fe = append(fe, errs.FieldError{Field: "route_port", Rule: "client, route and monitor ports must differ"})
	}
	for _, p := range []struct{ field, dir string }{{"config_root", o.ConfigRoot}, {"store_dir", o.StoreDir}} {
		if !path.IsAbs(p.dir) {
			fe = append(fe, errs.FieldError{Field: p.field, Rule: "must be an absolute path"})
		}
	}
	return errs.Fields(fe...)
}

func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// Paths under Options.Dir. Only nats/ goes to the servers, services/ to
// the gateway and health, signer/ to the users service; operator/ stays
// with the operator.
const (
	OperatorDir = "operator" // the trust (operator, account keys), the CA key
	NATSDir     = "nats"     // per node: nats-<i>.conf; shared: server TLS, the route password
	ServicesDir = "services" // <name>.creds and ca.pem
	SignerDir   = "signer"   // the account signing key and the JWTs (users --nats-trust)
)

// Services are the standalone services a creds file is written for.
var Services = []string{"users", "gateway", "health"}

// Result says what Init wrote.
type Result struct {
	// Configs is the path of each node's nats-server configuration.
	Configs []string
	// URLs are the client URLs (tls://host:port), as --nats-url and join
	// tokens take them.
	URLs []string
	// Account is the application account's public key.
	Account string
}

// Init writes the cluster into o.Dir (see the package doc). Keys already
// there are kept.
func Init(o Options) (Result, error) {
	if err := o.Validate(); err != nil {
		return Result{}, err
	}
	trust, err := natsauth.LoadOrCreate(filepath.Join(o.Dir, OperatorDir))
	if err != nil {
		return Result{}, err
	}
	tlsDir := filepath.Join(o.Dir, OperatorDir, "tls")
	tl, err := natsauth.LoadOrCreateTLS(tlsDir, o.Hosts)
	if err != nil {
		return Result{}, err
	}
	natsDir := filepath.Join(o.Dir, NATSDir)
	svcDir := filepath.Join(o.Dir, ServicesDir)
	for _, d := range []string{natsDir, svcDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return Result{}, errs.Wrap(errs.Invalid, err, "creating %s", d)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return Result{}, errs.Wrap(errs.Invalid, err, "restricting %s", d)
		}
	}
	for _, f := range []struct{ src, dst string }{
		{tl.CertFile(), "server.pem"}, {tl.KeyFile(), "server-key.pem"}, {tl.CAFile(), "ca.pem"},
	} {
		if err := copyFile(f.src, filepath.Join(natsDir, f.dst)); err != nil {
			return Result{}, err
		}
	}
	if err := copyFile(tl.CAFile(), filepath.Join(svcDir, "ca.pem")); err != nil {
		return Result{}, err
	}
	if err := writeFile(filepath.Join(natsDir, "operator.jwt"), []byte(trust.OperatorJWT()+"\n")); err != nil {
		return Result{}, err
	}
	routePass, err := routePassword(filepath.Join(o.Dir, OperatorDir, "route.password"))
	if err != nil {
		return Result{}, err
	}
	res := Result{Account: trust.Account()}
	for i, h := range o.Hosts {
		conf := serverConfig(o, trust, i, routePass)
		p := filepath.Join(natsDir, fmt.Sprintf("nats-%d.conf", i+1))
		if err := writeFile(p, []byte(conf)); err != nil {
			return Result{}, err
		}
		res.Configs = append(res.Configs, p)
		res.URLs = append(res.URLs, "tls://"+net.JoinHostPort(h, strconv.Itoa(o.ClientPort)))
	}
	for _, name := range Services {
		if err := trust.EnsureServiceCredsFile(filepath.Join(svcDir, name+".creds"), name); err != nil {
			return Result{}, err
		}
	}
	if err := trust.WriteSigner(filepath.Join(o.Dir, SignerDir)); err != nil {
		return Result{}, err
	}
	if err := copyFile(tl.CAFile(), filepath.Join(o.Dir, SignerDir, "ca.pem")); err != nil {
		return Result{}, err
	}
	return res, nil
}

// serverConfig is node i's nats-server configuration.
func serverConfig(o Options, trust *natsauth.Trust, i int, routePass string) string {
	root := o.ConfigRoot
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# nats-server %d of %d of cluster %s, written by vpn-cluster init: do not edit,\n", i+1, o.Nodes, o.Name)
	w("# run vpn-cluster init again (it keeps the keys).\n")
	w("server_name: %q\n", o.Hosts[i])
	w("listen: \"0.0.0.0:%d\"\n", o.ClientPort)
	if o.Monitor != 0 {
		w("http: \"0.0.0.0:%d\"\n", o.Monitor)
	}
	w("\n# Clients: TLS from the cluster's private CA (every client trusts it\n# and no public one).\n")
	w("tls {\n  cert_file: %q\n  key_file: %q\n  ca_file: %q\n  timeout: 5\n}\n",
		path.Join(root, "server.pem"), path.Join(root, "server-key.pem"), path.Join(root, "ca.pem"))
	w("\n# Routes: TLS, each node checks the others' certificate against the CA\n# and presents the cluster password.\n")
	w("cluster {\n  name: %q\n  listen: \"0.0.0.0:%d\"\n", o.Name, o.RoutePort)
	w("  authorization {\n    user: \"route\"\n    password: %q\n    timeout: 5\n  }\n", routePass)
	w("  tls {\n    cert_file: %q\n    key_file: %q\n    ca_file: %q\n    timeout: 5\n  }\n",
		path.Join(root, "server.pem"), path.Join(root, "server-key.pem"), path.Join(root, "ca.pem"))
	w("  routes: [\n")
	for j, h := range o.Hosts {
		if j == i {
			continue
		}
		w("    %q\n", fmt.Sprintf("nats-route://route:%s@%s", routePass, net.JoinHostPort(h, strconv.Itoa(o.RoutePort))))
	}
	w("  ]\n}\n")
	w("\n# Clustered JetStream; acknowledged writes are synced to disk first.\n")
	w("jetstream {\n  store_dir: %q\n  sync_interval: \"always\"\n}\n", path.Join(o.StoreDir, "jetstream"))
	w("\n# Decentralized JWT authentication: the operator, its system account and\n# the full account resolver (revocations arrive as account updates).\n")
	w("operator: %q\n", path.Join(root, "operator.jwt"))
	w("system_account: %q\n", trust.SystemAccount())
	w("resolver {\n  type: full\n  dir: %q\n  allow_delete: false\n  interval: \"2m\"\n}\n", path.Join(o.StoreDir, "accounts"))
	w("resolver_preload {\n")
	jwts := trust.AccountJWTs()
	for _, acc := range []string{trust.SystemAccount(), trust.Account()} {
		w("  %s: %q\n", acc, jwts[acc])
	}
	w("}\n")
	return b.String()
}

// routePassword returns the route password kept in file, or makes one.
func routePassword(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err == nil && len(strings.TrimSpace(string(data))) >= 32 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading %s: %w", file, err)
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", fmt.Errorf("making the route password: %w", err)
	}
	pass := hex.EncodeToString(buf)
	return pass, writeFile(file, []byte(pass+"\n"))
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("reading %s: %w", src, err)
	}
	return writeFile(dst, data)
}

// writeFile writes a file 0600 (its directory is 0700): readable by the
// uid that owns the directory, which is the uid the containers run as
// (deploy/cluster runs them as the invoking user).
func writeFile(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}
