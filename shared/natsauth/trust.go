// Package natsauth is how every connection to the bus is authenticated and
// authorised, with NATS's own decentralized JWT mechanism: an operator
// signs two accounts, the system account (the servers' own traffic and
// account updates) and the application account (all product traffic); the
// application account's signing key signs one user JWT per credential. A
// credential's permissions are written into its JWT, so the server enforces
// them with no callback to us, on one machine and on a cluster alike.
//
// Trust keeps those keys and JWTs in one directory (0700, files 0600) and
// mints credentials: services get full access to the application account,
// a node gets subject.NodePermissions for a key only it holds, a join token
// gets subject.JoinPermissions until it expires. Revoke writes a user's key
// into the account JWT and pushes the JWT to the servers, which close the
// user's connections at once and refuse it from then on.
//
// TLS is a private CA and a server certificate kept next to the keys.
// Clients trust that CA either from its PEM or by its SHA-256 fingerprint
// (as a join token carries it); public CAs are never trusted.
package natsauth

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Files under a Trust's directory. Seeds (.nk) are secrets; JWTs are not,
// but are kept 0600 with the rest.
const (
	operatorSeedFile = "operator.nk"
	operatorJWTFile  = "operator.jwt"
	systemSeedFile   = "system.nk"
	systemJWTFile    = "system.jwt"
	appSeedFile      = "account.nk"
	appJWTFile       = "account.jwt"
	signerSeedFile   = "account-signing.nk"
	// resolverDir is the embedded server's account JWT store.
	resolverDir = "accounts"
)

// Names written into the JWTs, shown by the server's monitoring.
const (
	operatorName = "vpnfleet"
	systemName   = "SYS"
	appName      = "VPN"
)

// Trust is the operator, its two accounts and the application account's
// signing key. It is safe for concurrent use. One process owns a Trust's
// directory at a time.
type Trust struct {
	dir      string
	operator nkeys.KeyPair
	system   nkeys.KeyPair
	app      nkeys.KeyPair
	signer   nkeys.KeyPair

	operatorPub, systemPub, appPub, signerPub string
	operatorJWT, systemJWT                    string

	mu     sync.Mutex
	appJWT string // changes with every revocation
}

// LoadOrCreate loads the trust kept in dir, creating whatever is missing:
// the first call makes new keys, every later one (after a restart too)
// returns the same keys and account, revocations included.
func LoadOrCreate(dir string) (*Trust, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "resolving %s", dir)
	}
	if err := privateDir(abs); err != nil {
		return nil, err
	}
	t := &Trust{dir: abs}
	keys := []struct {
		dst    *nkeys.KeyPair
		pub    *string
		file   string
		prefix nkeys.PrefixByte
		create func() (nkeys.KeyPair, error)
	}{
		{&t.operator, &t.operatorPub, operatorSeedFile, nkeys.PrefixByteOperator, nkeys.CreateOperator},
		{&t.system, &t.systemPub, systemSeedFile, nkeys.PrefixByteAccount, nkeys.CreateAccount},
		{&t.app, &t.appPub, appSeedFile, nkeys.PrefixByteAccount, nkeys.CreateAccount},
		{&t.signer, &t.signerPub, signerSeedFile, nkeys.PrefixByteAccount, nkeys.CreateAccount},
	}
	for _, k := range keys {
		kp, err := loadOrCreateKey(filepath.Join(abs, k.file), k.prefix, k.create)
		if err != nil {
			return nil, err
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("reading the public key of %s: %w", k.file, err)
		}
		*k.dst, *k.pub = kp, pub
	}
	if t.operatorJWT, err = t.loadOrIssue(operatorJWTFile, t.operatorCurrent, t.issueOperator); err != nil {
		return nil, err
	}
	if t.systemJWT, err = t.loadOrIssue(systemJWTFile, t.systemCurrent, t.issueSystem); err != nil {
		return nil, err
	}
	if t.appJWT, err = t.loadOrIssue(appJWTFile, t.appCurrent, t.issueApp); err != nil {
		return nil, err
	}
	return t, nil
}

// loadOrIssue returns the JWT kept in file when current accepts it, or
// issues a new one from what was there (issue may keep parts of it, such as
// revocations) and stores it.
func (t *Trust) loadOrIssue(file string, current func(string) bool, issue func(old string) (string, error)) (string, error) {
	path := filepath.Join(t.dir, file)
	old, err := loadText(path)
	if err != nil {
		return "", err
	}
	if old != "" && current(old) {
		return old, nil
	}
	token, err := issue(old)
	if err != nil {
		return "", fmt.Errorf("issuing %s: %w", file, err)
	}
	if err := writeFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", err
	}
	return token, nil
}

func (t *Trust) operatorCurrent(token string) bool {
	c, err := jwt.DecodeOperatorClaims(token)
	return err == nil && c.Subject == t.operatorPub && c.Issuer == t.operatorPub &&
		c.SystemAccount == t.systemPub
}

func (t *Trust) issueOperator(string) (string, error) {
	c := jwt.NewOperatorClaims(t.operatorPub)
	c.Name = operatorName
	c.SystemAccount = t.systemPub
	return c.Encode(t.operator)
}

func (t *Trust) systemCurrent(token string) bool {
	c, err := jwt.DecodeAccountClaims(token)
	return err == nil && c.Subject == t.systemPub && c.Issuer == t.operatorPub
}

func (t *Trust) issueSystem(string) (string, error) {
	c := jwt.NewAccountClaims(t.systemPub)
	c.Name = systemName
	return c.Encode(t.operator)
}

func (t *Trust) appCurrent(token string) bool {
	c, err := jwt.DecodeAccountClaims(token)
	return err == nil && c.Subject == t.appPub && c.Issuer == t.operatorPub &&
		c.SigningKeys.Contains(t.signerPub) && c.Limits.IsJSEnabled()
}

// issueApp issues the application account: JetStream without limits (the
// streams and buckets carry their own), users signed by the signing key,
// and the revocations of the JWT it replaces.
func (t *Trust) issueApp(old string) (string, error) {
	c := jwt.NewAccountClaims(t.appPub)
	c.Name = appName
	c.SigningKeys.Add(t.signerPub)
	c.Limits.JetStreamLimits = jwt.JetStreamLimits{
		MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit,
		MaxAckPending: jwt.NoLimit, MemoryMaxStreamBytes: jwt.NoLimit, DiskMaxStreamBytes: jwt.NoLimit,
	}
	if prev, err := jwt.DecodeAccountClaims(old); err == nil && prev.Subject == t.appPub {
		for k, at := range prev.Revocations {
			c.RevokeAt(k, time.Unix(at, 0))
		}
	}
	return c.Encode(t.operator)
}

// Dir is the directory the trust is kept in.
func (t *Trust) Dir() string { return t.dir }

// Operator is the operator's public key.
func (t *Trust) Operator() string { return t.operatorPub }

// OperatorJWT is the operator's JWT, which a server (or a cluster) is
// configured to trust.
func (t *Trust) OperatorJWT() string { return t.operatorJWT }

// SystemAccount is the public key of the system account.
func (t *Trust) SystemAccount() string { return t.systemPub }

// Account is the public key of the application account, where all product
// traffic, streams and buckets live.
func (t *Trust) Account() string { return t.appPub }

// AccountJWTs returns the current JWT of each account by public key, as a
// server's account resolver is preloaded with them.
func (t *Trust) AccountJWTs() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return map[string]string{t.systemPub: t.systemJWT, t.appPub: t.appJWT}
}

// ConfigureServer makes opts a server of this operator: it trusts the
// operator, uses its system account, and resolves accounts from a full
// account resolver (a directory under the trust's, preloaded with both
// accounts) that accepts signed account updates on the system account,
// which is how Revoke reaches it. Auth is then required of every client.
func (t *Trust) ConfigureServer(opts *server.Options) error {
	return t.ConfigureServerAt(opts, "")
}

// ConfigureServerAt is ConfigureServer with the server's account store in
// dir ("" is the trust's own), for several servers of one cluster that
// share a trust directory on one machine.
func (t *Trust) ConfigureServerAt(opts *server.Options, dir string) error {
	if dir == "" {
		dir = filepath.Join(t.dir, resolverDir)
	}
	op, err := jwt.DecodeOperatorClaims(t.operatorJWT)
	if err != nil {
		return fmt.Errorf("decoding the operator JWT: %w", err)
	}
	res, err := server.NewDirAccResolver(dir, 0, 0, server.NoDelete)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "opening the account store in %s", dir)
	}
	for pub, token := range t.AccountJWTs() {
		if err := res.Store(pub, token); err != nil {
			res.Close()
			return fmt.Errorf("preloading account %s: %w", pub, err)
		}
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{op}
	opts.SystemAccount = t.systemPub
	opts.AccountResolver = res
	return nil
}
