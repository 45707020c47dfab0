package natsauth

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// accountUpdate is the system-account request a full account resolver
// answers with the new JWT of an account: each server stores it, applies
// it to live connections (closing revoked users) and confirms.
func accountUpdate(account string) string { return "$SYS.REQ.ACCOUNT." + account + ".CLAIMS.UPDATE" }

// claimUpdateResponse is a server's answer to an account update.
type claimUpdateResponse struct {
	Data *struct {
		Account string `json:"account"`
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"data"`
	Error *struct {
		Account     string `json:"account"`
		Code        int    `json:"code"`
		Description string `json:"description"`
	} `json:"error"`
}

// Revoke revokes every credential issued so far to userPublicKey: the key
// goes into the application account's revocations, the account JWT is
// stored, then pushed over nc, which must be a connection of the system
// account (SystemCredential). Revoke returns once a server has confirmed;
// that server has by then closed the user's connections, and refuses the
// credential from then on. On a cluster every server with a full resolver
// applies the update.
func (t *Trust) Revoke(ctx context.Context, nc *nats.Conn, userPublicKey string) error {
	if !nkeys.IsValidPublicUserKey(userPublicKey) {
		return errs.Field("public_key", "must be a NATS user public key (U...)")
	}
	if !t.CanRevoke() {
		return errs.New(errs.Unavailable, "revoking needs the operator key, which this trust (a signer directory) does not hold")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := jwt.DecodeAccountClaims(t.appJWT)
	if err != nil {
		return fmt.Errorf("decoding the account JWT: %w", err)
	}
	c.RevokeAt(userPublicKey, time.Now())
	token, err := c.Encode(t.operator)
	if err != nil {
		return fmt.Errorf("signing the account JWT: %w", err)
	}
	// Stored first: should the push fail, the next start preloads it.
	if err := writeFile(filepath.Join(t.dir, appJWTFile), []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	t.appJWT = token
	if err := pushAccount(ctx, nc, t.appPub, token); err != nil {
		return fmt.Errorf("revoking %s: %w", userPublicKey, err)
	}
	return nil
}

// Revoked reports whether credentials of userPublicKey are revoked.
func (t *Trust) Revoked(userPublicKey string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := jwt.DecodeAccountClaims(t.appJWT)
	if err != nil {
		return false
	}
	_, ok := c.Revocations[userPublicKey]
	return ok
}

// PushAccounts sends the current account JWTs to the servers over nc (a
// system account connection), as an operator does once when pointing an
// external cluster's full resolver at this trust.
func (t *Trust) PushAccounts(ctx context.Context, nc *nats.Conn) error {
	for pub, token := range t.AccountJWTs() {
		if err := pushAccount(ctx, nc, pub, token); err != nil {
			return err
		}
	}
	return nil
}

// pushAccount sends an account JWT and waits for a server's confirmation.
func pushAccount(ctx context.Context, nc *nats.Conn, account, token string) error {
	msg, err := nc.RequestWithContext(ctx, accountUpdate(account), []byte(token))
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "pushing account %s (is the connection in the system account?)", account)
	}
	var r claimUpdateResponse
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return errs.Wrap(errs.Internal, err, "decoding the answer to the update of account %s", account)
	}
	if r.Error != nil {
		return errs.New(errs.Internal, "server refused the update of account %s: %s", account, r.Error.Description)
	}
	if r.Data == nil {
		return errs.New(errs.Internal, "server sent an empty answer to the update of account %s", account)
	}
	return nil
}
