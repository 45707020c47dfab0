// Package fleet enrolls nodes: `vpn nodes add` creates a node's
// enrollment (its groups, set by the operator) with a single-use, expiring
// join token; the new host's agent trades that token for its own
// credential (a NATS user JWT with subject.NodePermissions, minted for a
// key only the host holds); `vpn nodes revoke` ends a node's access at
// once. The enrollments bucket has one writer, this package; node groups
// are read from it, never from what an agent says of itself.
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Sentinel errors of the join, each wrapped in an error of its class.
var (
	// ErrTokenUsed: the join token was already exchanged (or replaced).
	ErrTokenUsed = errors.New("join token was already used or replaced")
	// ErrTokenExpired: the join token is past its expiry.
	ErrTokenExpired = errors.New("join token has expired")
	// ErrRevoked: the node was revoked.
	ErrRevoked = errors.New("node is revoked")
	// ErrJoined: the node holds a credential; revoke it before adding it
	// again.
	ErrJoined = errors.New("node has already joined")
)

// DefaultJoinTTL is how long a join token works when the request does not
// say.
const DefaultJoinTTL = time.Hour

// MaxJoinTTL bounds how long a join token may work.
const MaxJoinTTL = 7 * 24 * time.Hour

// Authority is what signs node credentials: the NATS trust (operator and
// account keys), a connection of the system account (revocations), where
// agents reach NATS and the fingerprint of the CA of its certificates.
// Only the process holding the keys (vpnd) has one.
type Authority struct {
	Trust *natsauth.Trust
	// System is a connection with a system-account credential.
	System *nats.Conn
	// URLs are the NATS URLs a join token lists (tls://host:port, or
	// nats:// on loopback).
	URLs []string
	// CAFingerprint and CAPEM describe the CA of the servers' TLS
	// certificates (empty without TLS).
	CAFingerprint string
	CAPEM         []byte
	// AgentCommand is the command a new host runs, without the token
	// (default "vpn-agent --join").
	AgentCommand string
}

// Fleet is the core. It keeps no state of its own.
type Fleet struct {
	js   jetstream.JetStream // reads node records (runtimes)
	kv   jetstream.KeyValue
	auth *Authority
	log  *slog.Logger
	now  func() time.Time
}

// Open binds a Fleet to the enrollments bucket. auth may be nil: then
// listing works and adding, joining and revoking answer Unavailable.
func Open(ctx context.Context, js jetstream.JetStream, auth *Authority, log *slog.Logger) (*Fleet, error) {
	kv, err := js.KeyValue(ctx, subject.BucketEnrollments)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketEnrollments)
	}
	return &Fleet{js: js, kv: kv, auth: auth, log: log, now: func() time.Time { return time.Now().UTC().Round(0) }}, nil
}

const nodeRule = "must be 1-128 characters of A-Z a-z 0-9 _ -"

func (f *Fleet) authority() (*Authority, error) {
	if f.auth == nil || f.auth.Trust == nil {
		return nil, errs.New(errs.Unavailable, "this registry holds no signing keys for node credentials; run it inside vpnd")
	}
	return f.auth, nil
}

func checkGroups(groups []string) ([]string, error) {
	for i, g := range groups {
		if !subject.ValidToken(g) {
			return nil, errs.Field(fmt.Sprintf("groups[%d]", i), nodeRule)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(groups))), nil
}

// Get returns a node's enrollment.
func (f *Fleet) Get(ctx context.Context, id string) (node.Enrollment, error) {
	e, err := f.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return node.Enrollment{}, errs.New(errs.NotFound, "node %s is not enrolled", id)
	}
	if err != nil {
		return node.Enrollment{}, errs.Wrap(errs.Unavailable, err, "reading enrollment of %s", id)
	}
	var en node.Enrollment
	if err := json.Unmarshal(e.Value(), &en); err != nil {
		return node.Enrollment{}, errs.Wrap(errs.Internal, err, "decoding enrollment of %s", id)
	}
	en.Revision = e.Revision()
	return en, nil
}

// write stores en with a compare-and-set on its revision (0: new).
func (f *Fleet) write(ctx context.Context, en node.Enrollment) (node.Enrollment, error) {
	rev := en.Revision
	en.Revision = 0
	data, err := json.Marshal(en)
	if err != nil {
		return node.Enrollment{}, errs.Wrap(errs.Internal, err, "encoding enrollment of %s", en.ID)
	}
	if rev == 0 {
		rev, err = f.kv.Create(ctx, en.ID, data)
	} else {
		rev, err = f.kv.Update(ctx, en.ID, data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return node.Enrollment{}, errs.New(errs.Conflict, "enrollment of %s changed meanwhile; retry", en.ID)
	}
	if err != nil {
		return node.Enrollment{}, errs.Wrap(errs.Unavailable, err, "storing enrollment of %s", en.ID)
	}
	en.Revision = rev
	return en, nil
}

// Add enrolls a node (or issues a pending node a new token) and returns
// its join token.
func (f *Fleet) Add(ctx context.Context, req node.AddRequest) (node.AddResponse, error) {
	var fe []errs.FieldError
	if !subject.ValidToken(req.Node) {
		fe = append(fe, errs.FieldError{Field: "node", Rule: nodeRule})
	}
	groups, gerr := checkGroups(req.Groups)
	fe = append(fe, errs.FieldsOf(gerr)...)
	ttl := req.TTL
	if ttl == 0 {
		ttl = DefaultJoinTTL
	}
	if ttl < time.Minute || ttl > MaxJoinTTL {
		fe = append(fe, errs.FieldError{Field: "ttl", Rule: "must be between 1m and 168h"})
	}
	if len(fe) > 0 {
		return node.AddResponse{}, errs.Fields(fe...)
	}
	auth, err := f.authority()
	if err != nil {
		return node.AddResponse{}, err
	}
	now := f.now()
	en, err := f.Get(ctx, req.Node)
	switch {
	case errs.ClassOf(err) == errs.NotFound:
		en = node.Enrollment{ID: req.Node, CreatedAt: now}
	case err != nil:
		return node.AddResponse{}, err
	case en.State == node.EnrollJoined:
		return node.AddResponse{}, errs.Wrap(errs.Conflict, ErrJoined, "node %s; run `vpn nodes revoke %s` first", req.Node, req.Node)
	}
	tokenID, err := newTokenID()
	if err != nil {
		return node.AddResponse{}, err
	}
	expires := now.Add(ttl)
	cred, err := auth.Trust.JoinCredential(tokenID, expires)
	if err != nil {
		return node.AddResponse{}, err
	}
	en.Groups, en.State, en.JoinTokenID, en.JoinExpires = groups, node.EnrollPending, tokenID, expires
	en.CredentialKey, en.RevokedAt = "", time.Time{}
	en, err = f.write(ctx, en)
	if err != nil {
		return node.AddResponse{}, err
	}
	tok := natsauth.JoinToken{
		URLs: auth.URLs, CAFingerprint: auth.CAFingerprint, Node: req.Node, TokenID: tokenID,
		JWT: cred.JWT, Seed: string(cred.Seed), Expires: expires,
	}
	cmd := auth.AgentCommand
	if cmd == "" {
		cmd = "vpn-agent --join"
	}
	enc := tok.Encode()
	f.log.Info("node enrolled", logkey.Node, req.Node, logkey.Detail, "join token "+tokenID)
	return node.AddResponse{Enrollment: en, Token: enc, Command: cmd + " " + enc, Expires: expires}, nil
}

func newTokenID() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// Join exchanges join token tokenID (the subject it arrived on proves the
// sender holds that token's credential) for the node's credential, once.
func (f *Fleet) Join(ctx context.Context, tokenID string, req node.JoinRequest) (node.JoinResponse, error) {
	if !nkeys.IsValidPublicUserKey(req.PublicKey) {
		return node.JoinResponse{}, errs.Field("public_key", "must be a NATS user public key (U...)")
	}
	if !subject.ValidToken(req.Node) {
		return node.JoinResponse{}, errs.Field("node", nodeRule)
	}
	auth, err := f.authority()
	if err != nil {
		return node.JoinResponse{}, err
	}
	en, err := f.Get(ctx, req.Node)
	if err != nil {
		return node.JoinResponse{}, err
	}
	switch {
	case en.State == node.EnrollRevoked:
		return node.JoinResponse{}, errs.Wrap(errs.Forbidden, ErrRevoked, "node %s: %v", req.Node, ErrRevoked)
	case en.State != node.EnrollPending || en.JoinTokenID != tokenID:
		return node.JoinResponse{}, errs.Wrap(errs.Forbidden, ErrTokenUsed, "node %s: %v", req.Node, ErrTokenUsed)
	case !f.now().Before(en.JoinExpires):
		return node.JoinResponse{}, errs.Wrap(errs.Forbidden, ErrTokenExpired, "node %s: %v", req.Node, ErrTokenExpired)
	}
	token, err := auth.Trust.NodeJWT(req.Node, req.PublicKey)
	if err != nil {
		return node.JoinResponse{}, err
	}
	en.State, en.CredentialKey, en.JoinTokenID, en.JoinedAt = node.EnrollJoined, req.PublicKey, "", f.now()
	if _, err := f.write(ctx, en); err != nil {
		return node.JoinResponse{}, err
	}
	f.log.Info("node joined", logkey.Node, req.Node, logkey.Detail, req.Hostname)
	return node.JoinResponse{JWT: token, CAPEM: string(auth.CAPEM), URLs: auth.URLs}, nil
}

// Revoke ends a node's access: its enrollment says revoked (so the views
// drop its desired state) and its credential's key is revoked in the
// account, which closes its connection at once.
func (f *Fleet) Revoke(ctx context.Context, req node.NodeRequest) (node.Enrollment, error) {
	if !subject.ValidToken(req.Node) {
		return node.Enrollment{}, errs.Field("node", nodeRule)
	}
	auth, err := f.authority()
	if err != nil {
		return node.Enrollment{}, err
	}
	if auth.System == nil || !auth.Trust.CanRevoke() {
		// Checked before the enrollment changes: nothing half-done.
		return node.Enrollment{}, errs.New(errs.Unavailable, "this registry mints node credentials with the account signing key only; revoking needs the operator key, which stays with the operator (vpnd holds it; a cluster's is in vpn-cluster init's <dir>/operator)")
	}
	en, err := f.Get(ctx, req.Node)
	if err != nil {
		return node.Enrollment{}, err
	}
	key := en.CredentialKey
	if en.State != node.EnrollRevoked {
		en.State, en.JoinTokenID, en.RevokedAt = node.EnrollRevoked, "", f.now()
		if en, err = f.write(ctx, en); err != nil {
			return node.Enrollment{}, err
		}
	}
	if key != "" && !auth.Trust.Revoked(key) {
		if err := auth.Trust.Revoke(ctx, auth.System, key); err != nil {
			return en, errs.Wrap(errs.Unavailable, err, "revoking the credential of %s", req.Node)
		}
	}
	f.log.Info("node revoked", logkey.Node, req.Node)
	return en, nil
}

// SetGroups changes a node's groups; the views follow.
func (f *Fleet) SetGroups(ctx context.Context, req node.GroupsRequest) (node.Enrollment, error) {
	if !subject.ValidToken(req.Node) {
		return node.Enrollment{}, errs.Field("node", nodeRule)
	}
	groups, err := checkGroups(req.Groups)
	if err != nil {
		return node.Enrollment{}, err
	}
	en, err := f.Get(ctx, req.Node)
	if err != nil {
		return node.Enrollment{}, err
	}
	en.Groups = groups
	return f.write(ctx, en)
}

// List returns every enrollment, sorted by node.
func (f *Fleet) List(ctx context.Context, _ struct{}) (node.EnrollmentsResponse, error) {
	lister, err := f.kv.ListKeys(ctx)
	if err != nil {
		return node.EnrollmentsResponse{}, errs.Wrap(errs.Unavailable, err, "listing enrollments")
	}
	out := []node.Enrollment{}
	for k := range lister.Keys() {
		en, err := f.Get(ctx, k)
		if errs.ClassOf(err) == errs.NotFound {
			continue
		}
		if err != nil {
			return node.EnrollmentsResponse{}, err
		}
		out = append(out, en)
	}
	slices.SortFunc(out, func(a, b node.Enrollment) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return node.EnrollmentsResponse{Enrollments: out}, nil
}

// EnrollLocal enrolls the node vpnd's own agent runs as, with groups, and
// mints its credential for userPublicKey directly (no token: the key never
// leaves the process). It keeps a joined node's credential key unless it
// differs, and refuses a revoked node.
func (f *Fleet) EnrollLocal(ctx context.Context, id string, groups []string, userPublicKey string) (string, error) {
	auth, err := f.authority()
	if err != nil {
		return "", err
	}
	groups, err = checkGroups(groups)
	if err != nil {
		return "", err
	}
	en, err := f.Get(ctx, id)
	switch {
	case errs.ClassOf(err) == errs.NotFound:
		en = node.Enrollment{ID: id, CreatedAt: f.now()}
	case err != nil:
		return "", err
	case en.State == node.EnrollRevoked:
		return "", errs.Wrap(errs.Forbidden, ErrRevoked, "the local node %s; re-add it with `vpn nodes add %s`", id, id)
	}
	if en.State != node.EnrollJoined || en.CredentialKey != userPublicKey || !slices.Equal(en.Groups, groups) {
		en.State, en.CredentialKey, en.Groups, en.JoinTokenID = node.EnrollJoined, userPublicKey, groups, ""
		if en.JoinedAt.IsZero() {
			en.JoinedAt = f.now()
		}
		if _, err := f.write(ctx, en); err != nil {
			return "", err
		}
	}
	return auth.Trust.NodeJWT(id, userPublicKey)
}
