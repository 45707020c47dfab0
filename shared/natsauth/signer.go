package natsauth

import (
	"bytes"
	"fmt"
	"path/filepath"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// WriteSigner writes into dir (0700, files 0600) what a service needs to
// mint node and join credentials of this trust on a NATS cluster it does
// not run: the application account's signing key and the public JWTs
// (operator, system and application accounts). The operator and account
// keys stay out: a service holding dir can sign users of the account, not
// change the account or the operator.
func (t *Trust) WriteSigner(dir string) error {
	if t.signer == nil {
		return errs.New(errs.Invalid, "writing a signer: this trust holds no signing key")
	}
	if err := privateDir(dir); err != nil {
		return err
	}
	seed, err := t.signer.Seed()
	if err != nil {
		return fmt.Errorf("reading the signing key's seed: %w", err)
	}
	jwts := t.AccountJWTs()
	for _, f := range []struct {
		name string
		data []byte
	}{
		{signerSeedFile, seed},
		{operatorJWTFile, []byte(t.operatorJWT + "\n")},
		{systemJWTFile, []byte(jwts[t.systemPub] + "\n")},
		{appJWTFile, []byte(jwts[t.appPub] + "\n")},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// LoadSigner loads a directory written by WriteSigner. The Trust it
// returns mints service, node and join credentials and configures
// servers like the full trust, but cannot revoke (Revoke answers
// Unavailable: that needs the operator key) nor mint system users. It
// creates nothing: a missing or foreign file is an Invalid error naming
// it.
func LoadSigner(dir string) (*Trust, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "resolving %s", dir)
	}
	t := &Trust{dir: abs}
	seed, err := readSecret(filepath.Join(abs, signerSeedFile))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the account signing key")
	}
	seed = bytes.TrimSpace(seed)
	if prefix, _, err := nkeys.DecodeSeed(seed); err != nil || prefix != nkeys.PrefixByteAccount {
		return nil, errs.New(errs.Invalid, "%s does not hold an account seed", filepath.Join(abs, signerSeedFile))
	}
	if t.signer, err = nkeys.FromSeed(seed); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the seed in %s", filepath.Join(abs, signerSeedFile))
	}
	t.signerPub, _ = t.signer.PublicKey()
	text := map[string]*string{operatorJWTFile: &t.operatorJWT, systemJWTFile: &t.systemJWT, appJWTFile: &t.appJWT}
	for file, dst := range text {
		s, err := loadText(filepath.Join(abs, file))
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, errs.New(errs.Invalid, "%s is missing: write the signer directory again", filepath.Join(abs, file))
		}
		*dst = s
	}
	op, err := jwt.DecodeOperatorClaims(t.operatorJWT)
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "decoding %s", operatorJWTFile)
	}
	sys, err := jwt.DecodeAccountClaims(t.systemJWT)
	if err != nil || sys.Issuer != op.Subject || sys.Subject != op.SystemAccount {
		return nil, errs.New(errs.Invalid, "%s is not the system account of the operator in %s", systemJWTFile, operatorJWTFile)
	}
	app, err := jwt.DecodeAccountClaims(t.appJWT)
	if err != nil || app.Issuer != op.Subject || !app.SigningKeys.Contains(t.signerPub) {
		return nil, errs.New(errs.Invalid, "%s is not an account of the operator in %s signed for by %s", appJWTFile, operatorJWTFile, signerSeedFile)
	}
	t.operatorPub, t.systemPub, t.appPub = op.Subject, sys.Subject, app.Subject
	return t, nil
}

// CanRevoke reports whether the trust holds the operator key that
// revoking needs (LoadOrCreate's does; LoadSigner's does not).
func (t *Trust) CanRevoke() bool { return t.operator != nil }
