package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/shared/bus"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Files of a joined node, under <data dir>/nats (0700; files 0600).
const (
	joinDir       = "nats"
	nodeCredsFile = "node.creds"
	caFile        = "ca.pem"
	joinedFile    = "joined.json"
)

// Joined is what a node keeps after joining: its id, where NATS is, its
// credential (a creds file: the JWT the fleet minted and the seed only
// this host ever had) and the CA of the servers' certificates.
type Joined struct {
	Node string   `json:"node"`
	URLs []string `json:"urls"`
	// TokenSHA256 is the hex SHA-256 of the join token this host joined
	// with, so the same token given again is recognised as done (it is
	// single-use, and may have expired since).
	TokenSHA256 string `json:"token_sha256,omitempty"`
	CredsFile   string `json:"-"`
	CAFile      string `json:"-"`
}

// DialOptions are the options of the node's connections: its credential,
// its own inbox prefix (the only one it may read) and TLS with the CA it
// was given.
func (j Joined) DialOptions() ([]nats.Option, error) {
	opts := []nats.Option{nats.UserCredentials(j.CredsFile), nats.CustomInboxPrefix(subject.NodeInboxPrefix(j.Node))}
	if _, err := os.Stat(j.CAFile); err == nil {
		cfg, err := natsauth.ClientConfigFromCAFile(j.CAFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// ServerURLs is URLs as nats.Connect takes them.
func (j Joined) ServerURLs() string { return strings.Join(j.URLs, ",") }

// LoadJoined reads what an earlier join kept in dataDir; ok is false when
// the node never joined.
func LoadJoined(dataDir string) (Joined, bool, error) {
	dir := filepath.Join(dataDir, joinDir)
	data, err := os.ReadFile(filepath.Join(dir, joinedFile))
	if errors.Is(err, os.ErrNotExist) {
		return Joined{}, false, nil
	}
	if err != nil {
		return Joined{}, false, errs.Wrap(errs.Invalid, err, "reading the join record")
	}
	var j Joined
	if err := json.Unmarshal(data, &j); err != nil || !subject.ValidToken(j.Node) || len(j.URLs) == 0 {
		return Joined{}, false, errs.New(errs.Invalid, "the join record %s is damaged; join again with a new token", filepath.Join(dir, joinedFile))
	}
	j.CredsFile, j.CAFile = filepath.Join(dir, nodeCredsFile), filepath.Join(dir, caFile)
	return j, true, nil
}

// Join trades a join token (`vpn nodes add` printed it) for this node's
// credential and keeps it in dataDir: it makes a user key whose seed never
// leaves this host, sends its public key with the token's short-lived
// credential over TLS pinned to the token's CA, and stores the JWT it gets
// back with the seed. A token works once; a malformed, expired or used
// token is one clear error and leaves dataDir as it was. The token this
// host already joined with is no error: Join returns what that join kept
// and asks nothing of the server, so an installer or a unit that passes
// the token again on every run keeps working.
func Join(ctx context.Context, token, dataDir string) (Joined, error) {
	sum := tokenSHA256(token)
	if j, ok, err := LoadJoined(dataDir); err == nil && ok && j.TokenSHA256 == sum {
		return j, nil
	}
	tok, err := natsauth.DecodeJoinToken(token)
	if err != nil {
		return Joined{}, err
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Joined{}, fmt.Errorf("creating the node key: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	opts, err := tok.Options()
	if err != nil {
		return Joined{}, err
	}
	opts = append(opts, nats.Name("vpn-agent join "+tok.Node), nats.Timeout(10*time.Second))
	nc, err := nats.Connect(tok.ServerURLs(), opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return Joined{}, errs.Wrap(errs.Unauthorized, err, "the server refused the join token: it expired, was already used, or was replaced by a newer `vpn nodes add`")
		}
		return Joined{}, errs.Wrap(errs.Unavailable, err, "reaching %s with the join token", tok.ServerURLs())
	}
	defer nc.Close()
	host, _ := os.Hostname()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := bus.Request[node.JoinResponse](rctx, nc, subject.FleetJoin(tok.TokenID), node.JoinRequest{Node: tok.Node, PublicKey: pub, Hostname: host})
	if err != nil {
		return Joined{}, fmt.Errorf("joining as node %s: %w", tok.Node, err)
	}
	cred := natsauth.Credential{JWT: resp.JWT, Seed: seed}
	dir := filepath.Join(dataDir, joinDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Joined{}, errs.Wrap(errs.Invalid, err, "creating %s", dir)
	}
	j := Joined{Node: tok.Node, URLs: resp.URLs, TokenSHA256: sum, CredsFile: filepath.Join(dir, nodeCredsFile), CAFile: filepath.Join(dir, caFile)}
	if len(j.URLs) == 0 {
		j.URLs = tok.URLs
	}
	if err := natsauth.WriteCredsFile(j.CredsFile, cred); err != nil {
		return Joined{}, err
	}
	if resp.CAPEM != "" {
		if err := atomicfile.Write(j.CAFile, []byte(resp.CAPEM), 0o600, true); err != nil {
			return Joined{}, errs.Wrap(errs.Invalid, err, "keeping the CA in %s", j.CAFile)
		}
	}
	// The node id goes where nodeID finds it, so later starts need no flag.
	if err := atomicfile.Write(filepath.Join(dataDir, "node-id"), []byte(tok.Node+"\n"), 0o600, true); err != nil {
		return Joined{}, errs.Wrap(errs.Invalid, err, "keeping the node id")
	}
	data, _ := json.Marshal(j)
	if err := atomicfile.Write(filepath.Join(dir, joinedFile), data, 0o600, true); err != nil {
		return Joined{}, errs.Wrap(errs.Invalid, err, "keeping the join record")
	}
	return j, nil
}

// tokenSHA256 is the hex SHA-256 of a join token as given (surrounding
// space trimmed, as DecodeJoinToken does).
func tokenSHA256(token string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return hex.EncodeToString(h[:])
}
