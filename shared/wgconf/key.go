// Package wgconf is WireGuard's client-facing contract: keys (generated,
// parsed and validated) and the wg-quick `.conf` file a user imports or
// scans, rendered and parsed. The registry, the gateway and the agent share
// it so that a key is validated by one rule and a `.conf` has one form.
package wgconf

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// KeyLen is the length of every WireGuard key (Curve25519 keys and
// preshared keys alike).
const KeyLen = 32

// Key is a WireGuard key: a Curve25519 private or public key, or a
// preshared key. Its text form is standard base64, as wg(8) prints it.
type Key [KeyLen]byte

// Rules broken by a bad key, as field errors name them.
const (
	RuleKeyEncoding = "must be 44 characters of standard base64 encoding 32 bytes"
	RuleKeyPoint    = "must be a Curve25519 public key (not zero nor a low-order point)"
)

// GeneratePrivateKey returns a new random private key, clamped as
// `wg genkey` clamps it.
func GeneratePrivateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generating a wireguard key: %w", err)
	}
	k[0] &= 248
	k[31] = (k[31] & 127) | 64
	return k, nil
}

// GeneratePresharedKey returns a new random preshared key.
func GeneratePresharedKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generating a wireguard preshared key: %w", err)
	}
	return k, nil
}

// PublicKey is the public key of private key k.
func (k Key) PublicKey() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil { // only for a wrong length, which a Key cannot have
		panic(err)
	}
	var pub Key
	copy(pub[:], priv.PublicKey().Bytes())
	return pub
}

// IsZero tells whether k is unset.
func (k Key) IsZero() bool { return k == Key{} }

// String is k in base64, as wg(8) and `.conf` files write keys.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Hex is k in lowercase hex, as the UAPI configuration protocol writes keys.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// MarshalText writes k in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads a base64 key (any key: use ParsePublicKey to also
// check that a public key is a usable point).
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseKey("key", string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// ParseKey reads a base64 key (private or preshared). A bad one gives an
// errs.Invalid error naming field and RuleKeyEncoding.
func ParseKey(field, s string) (Key, error) {
	var k Key
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != KeyLen {
		return Key{}, errs.Field(field, RuleKeyEncoding)
	}
	copy(k[:], b)
	return k, nil
}

// ParsePublicKey reads a base64 public key and checks it is a point a
// peer can hold a session with: every 32 bytes decode to a Curve25519
// x-coordinate, but a low-order point (zero among them) makes every shared
// secret zero, which WireGuard refuses at the first handshake. Such a key
// gives an errs.Invalid error naming field and RuleKeyPoint.
func ParsePublicKey(field, s string) (Key, error) {
	k, err := ParseKey(field, s)
	if err != nil {
		return Key{}, err
	}
	if err := k.checkPoint(field); err != nil {
		return Key{}, err
	}
	return k, nil
}

// ValidatePublic checks that k is usable as a peer's public key (see
// ParsePublicKey), naming field in the error.
func (k Key) ValidatePublic(field string) error { return k.checkPoint(field) }

// checker is a fixed scalar: its shared secret with a low-order point (and
// only with one) is zero, which crypto/ecdh reports as an error.
var checker = func() *ecdh.PrivateKey {
	s := Key{1}
	s[0] &= 248
	s[31] = 64
	p, err := ecdh.X25519().NewPrivateKey(s[:])
	if err != nil {
		panic(err)
	}
	return p
}()

func (k Key) checkPoint(field string) error {
	pub, err := ecdh.X25519().NewPublicKey(k[:])
	if err != nil {
		return errs.Field(field, RuleKeyPoint)
	}
	if _, err := checker.ECDH(pub); err != nil {
		return errs.Field(field, RuleKeyPoint)
	}
	return nil
}
