// Package serverkeys generates and checks the secrets of server inbounds,
// all from crypto/rand: REALITY X25519 key pairs (base64url without
// padding, the form Xray's config and clients' links use), REALITY short
// ids, and Shadowsocks-2022 server keys (standard base64 of the method's
// key length). A key never appears in an error: the errors say which rule
// the input broke, not what it was.
package serverkeys

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// X25519KeyLen is the length of an X25519 key in bytes.
const X25519KeyLen = 32

// ShortIDLen is the length in bytes of a generated short id (8 hex digits).
const ShortIDLen = 4

// Rules broken by a key, as reported in field errors.
var (
	ErrNotBase64URL = errors.New("must be base64url without padding")
	ErrNotBase64    = errors.New("must be standard base64")
	ErrAllZero      = errors.New("must not be all zeros")
)

// X25519Pair is a REALITY key pair: the server keeps Private, links carry
// Public.
type X25519Pair struct {
	Private string
	Public  string
}

// NewX25519 generates a key pair with crypto/ecdh. A pair whose private or
// public key is all zeros (never seen in practice) is drawn again.
func NewX25519() (X25519Pair, error) {
	for range 4 {
		k, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return X25519Pair{}, fmt.Errorf("generating x25519 key: %w", err)
		}
		priv, pub := k.Bytes(), k.PublicKey().Bytes()
		if allZero(priv) || allZero(pub) {
			continue
		}
		return X25519Pair{Private: encodeURL(priv), Public: encodeURL(pub)}, nil
	}
	return X25519Pair{}, errors.New("generating x25519 key: random source keeps giving zero keys")
}

// X25519FromPrivate checks an X25519 private key given as base64url without
// padding and derives its public key.
func X25519FromPrivate(private string) (X25519Pair, error) {
	raw, err := DecodeX25519(private)
	if err != nil {
		return X25519Pair{}, err
	}
	k, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return X25519Pair{}, fmt.Errorf("must be an x25519 private key: %w", err)
	}
	pub := k.PublicKey().Bytes()
	if allZero(pub) {
		return X25519Pair{}, fmt.Errorf("public key: %w", ErrAllZero)
	}
	return X25519Pair{Private: private, Public: encodeURL(pub)}, nil
}

// DecodeX25519 decodes an X25519 key (private or public) from base64url
// without padding: exactly 32 bytes, not all zeros.
func DecodeX25519(s string) ([]byte, error) {
	if strings.ContainsAny(s, "=+/") {
		return nil, ErrNotBase64URL
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, ErrNotBase64URL
	}
	if len(raw) != X25519KeyLen {
		return nil, fmt.Errorf("must decode to %d bytes, not %d", X25519KeyLen, len(raw))
	}
	if allZero(raw) {
		return nil, ErrAllZero
	}
	return raw, nil
}

// NewShortID returns a random REALITY short id of 8 lowercase hex digits.
func NewShortID() (string, error) {
	b := make([]byte, ShortIDLen)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating short id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// NewSS2022Key returns a random Shadowsocks-2022 server key for method.
func NewSS2022Key(method string) (string, error) {
	for range 4 {
		key, err := credentials.SS2022Key(method)
		if err != nil {
			return "", err
		}
		if raw, _ := base64.StdEncoding.DecodeString(key); !allZero(raw) {
			return key, nil
		}
	}
	return "", errors.New("generating shadowsocks key: random source keeps giving zero keys")
}

// DecodeSS2022Key decodes a Shadowsocks-2022 key for method: standard
// base64 of exactly the method's key length, not all zeros.
func DecodeSS2022Key(method, key string) ([]byte, error) {
	n, ok := user.SS2022KeyLen(method)
	if !ok {
		return nil, fmt.Errorf("unknown method %q", method)
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, ErrNotBase64
	}
	if len(raw) != n {
		return nil, fmt.Errorf("must decode to %d bytes for %s, not %d", n, method, len(raw))
	}
	if allZero(raw) {
		return nil, ErrAllZero
	}
	return raw, nil
}

func encodeURL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
