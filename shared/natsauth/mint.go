package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Credential is a user JWT and the seed of the key it was issued to. A
// node's credential is minted for a key the node keeps: the trust side
// then has the JWT only, and the node adds its seed.
type Credential struct {
	JWT  string
	Seed []byte
}

// File formats the credential as a NATS creds file (the decorated JWT and
// seed that nats.UserCredentials and the nats CLI read).
func (c Credential) File() ([]byte, error) {
	if len(c.Seed) == 0 {
		return nil, errs.New(errs.Invalid, "formatting a creds file: the credential has no seed")
	}
	data, err := jwt.FormatUserConfig(c.JWT, c.Seed)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "formatting a creds file")
	}
	return data, nil
}

// Option authenticates a connection with the credential.
func (c Credential) Option() nats.Option { return nats.UserJWTAndSeed(c.JWT, string(c.Seed)) }

// PublicKey is the user's public key: what Revoke takes.
func (c Credential) PublicKey() (string, error) {
	uc, err := jwt.DecodeUserClaims(c.JWT)
	if err != nil {
		return "", errs.Wrap(errs.Invalid, err, "decoding a user JWT")
	}
	return uc.Subject, nil
}

// WriteCredsFile writes c as a creds file at path, mode 0600, atomically.
func WriteCredsFile(path string, c Credential) error {
	data, err := c.File()
	if err != nil {
		return err
	}
	return writeFile(path, data, 0o600)
}

// EnsureServiceCredsFile keeps the creds file at path when it holds a
// service credential of this trust that is not revoked, and writes a new
// one named name otherwise, so that standalone services configured with it
// keep working across restarts. A file that others may read is refused.
func (t *Trust) EnsureServiceCredsFile(path, name string) error {
	data, err := readSecret(path)
	switch {
	case err == nil && t.isServiceCreds(data):
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	cred, err := t.ServiceCredential(name)
	if err != nil {
		return err
	}
	return WriteCredsFile(path, cred)
}

// isServiceCreds reports whether a creds file holds a live service
// credential of this trust: its JWT was signed by the account's signing
// key, grants everything, and belongs to the seed next to it.
func (t *Trust) isServiceCreds(data []byte) bool {
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		return false
	}
	kp, err := jwt.ParseDecoratedNKey(data)
	if err != nil {
		return false
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return false
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil || uc.Subject != pub || uc.Issuer != t.signerPub || uc.IssuerAccount != t.appPub || uc.Expires != 0 {
		return false
	}
	p := uc.Permissions
	if len(p.Pub.Allow)+len(p.Pub.Deny)+len(p.Sub.Allow)+len(p.Sub.Deny) > 0 || p.Resp != nil {
		return false
	}
	return !t.Revoked(pub)
}

// responseTTL is how long a credential allowed to answer requests may
// answer each one (NATS's own default for allow_responses).
const responseTTL = 2 * time.Minute

// ServiceCredential mints a credential with full access to the application
// account, for the services (users, gateway, health) and vpnd itself. name
// says which ("service:<name>" in the server's connection list).
func (t *Trust) ServiceCredential(name string) (Credential, error) {
	return t.mintWithKey("service:"+name, nil, time.Time{})
}

// NodeJWT mints the user JWT of node's credential for userPublicKey, a
// user nkey whose seed only the node holds. Its permissions are
// subject.NodePermissions(node); it never expires, Revoke ends it.
func (t *Trust) NodeJWT(node, userPublicKey string) (string, error) {
	if !subject.ValidToken(node) {
		return "", errs.Field("node", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	}
	if !nkeys.IsValidPublicUserKey(userPublicKey) {
		return "", errs.Field("public_key", "must be a NATS user public key (U...)")
	}
	perms := subject.NodePermissions(node)
	return t.mint("node:"+node, userPublicKey, &perms, time.Time{})
}

// JoinCredential mints the short-lived credential a join token carries: it
// may send one join request on subject.FleetJoin(tokenID) and read the
// reply, until expires (the server refuses it after that, and closes a
// connection still open).
func (t *Trust) JoinCredential(tokenID string, expires time.Time) (Credential, error) {
	if !subject.ValidToken(tokenID) {
		return Credential{}, errs.Field("token_id", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	}
	if !expires.After(time.Now()) {
		return Credential{}, errs.Field("expires", "must be in the future")
	}
	perms := subject.JoinPermissions(tokenID)
	return t.mintWithKey("join:"+tokenID, &perms, expires)
}

// SystemCredential mints a user of the system account, which can send
// account updates (Revoke) and read the servers' own events. It has no
// access to product traffic.
func (t *Trust) SystemCredential(name string) (Credential, error) {
	if t.system == nil {
		return Credential{}, errs.New(errs.Unavailable, "minting a system user needs the system account key, which this trust (a signer directory) does not hold")
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Credential{}, fmt.Errorf("creating a user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = "system:" + name
	token, err := uc.Encode(t.system)
	if err != nil {
		return Credential{}, fmt.Errorf("signing the user JWT of %s: %w", uc.Name, err)
	}
	return Credential{JWT: token, Seed: seed}, nil
}

// mintWithKey mints a credential for a new user key.
func (t *Trust) mintWithKey(name string, perms *subject.Permissions, expires time.Time) (Credential, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Credential{}, fmt.Errorf("creating a user key: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return Credential{}, fmt.Errorf("reading a user public key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Credential{}, fmt.Errorf("reading a user seed: %w", err)
	}
	token, err := t.mint(name, pub, perms, expires)
	if err != nil {
		return Credential{}, err
	}
	return Credential{JWT: token, Seed: seed}, nil
}

// mint signs a user JWT of the application account with its signing key.
// A nil perms means no restriction; a zero expires never expires.
func (t *Trust) mint(name, userPub string, perms *subject.Permissions, expires time.Time) (string, error) {
	uc := jwt.NewUserClaims(userPub)
	uc.Name = name
	uc.IssuerAccount = t.appPub
	if perms != nil {
		uc.Permissions = jwtPermissions(*perms)
	}
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	token, err := uc.Encode(t.signer)
	if err != nil {
		return "", fmt.Errorf("signing the user JWT of %s: %w", name, err)
	}
	return token, nil
}

// jwtPermissions writes p as JWT permissions. An empty allow list in p
// means nothing is allowed, which a JWT says with a deny of everything (an
// empty JWT list means no restriction).
func jwtPermissions(p subject.Permissions) jwt.Permissions {
	var jp jwt.Permissions
	if len(p.Publish) == 0 {
		jp.Pub.Deny.Add(">")
	} else {
		jp.Pub.Allow.Add(p.Publish...)
	}
	if len(p.Subscribe) == 0 {
		jp.Sub.Deny.Add(">")
	} else {
		jp.Sub.Allow.Add(p.Subscribe...)
	}
	if p.Responses {
		jp.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: responseTTL}
	}
	return jp
}
