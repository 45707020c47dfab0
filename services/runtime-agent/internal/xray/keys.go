package xray

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// X25519KeyPair is a REALITY key pair. Both halves are base64url without
// padding, the encoding Xray's config and share links use: the private key
// goes into the server's realitySettings, the public key ("pbk") into links.
type X25519KeyPair struct {
	PrivateKey string
	PublicKey  string
}

// NewX25519KeyPair generates a fresh REALITY key pair.
func NewX25519KeyPair() (X25519KeyPair, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return X25519KeyPair{}, fmt.Errorf("generating x25519 key: %w", err)
	}
	return X25519KeyPair{
		PrivateKey: base64.RawURLEncoding.EncodeToString(k.Bytes()),
		PublicKey:  base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
	}, nil
}

// X25519PublicKey derives the public key ("pbk" in links) from a REALITY
// private key, so only the private key needs storing. An invalid key is an
// errs.Invalid error naming the field "private_key".
func X25519PublicKey(privateKey string) (string, error) {
	raw, err := DecodeX25519Key(privateKey)
	if err != nil {
		return "", errs.Field("private_key", err.Error())
	}
	k, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return "", errs.Field("private_key", err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()), nil
}

// keyError is a key decoding failure; its text is the rule that was broken,
// ready for errs.Field.
type keyError string

func (e keyError) Error() string { return string(e) }

// DecodeX25519Key decodes a REALITY key (private or public) as Xray does:
// base64url without padding, exactly 32 bytes. It also rejects the all-zero
// key, which is what an unset key looks like after a botched copy. The error
// text is a rule suitable for errs.Field.
func DecodeX25519Key(s string) ([]byte, error) {
	if s == "" {
		return nil, keyError("is required")
	}
	if strings.ContainsAny(s, "=+/") {
		return nil, keyError("must be base64url without padding")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, keyError("must be base64url without padding")
	}
	if len(raw) != 32 {
		return nil, keyError(fmt.Sprintf("must decode to 32 bytes, got %d", len(raw)))
	}
	if allZero(raw) {
		return nil, keyError("must not be all zeros")
	}
	return raw, nil
}

// The Shadowsocks-2022 methods Xray implements. Only the AES ones support
// several users on one inbound (Xray refuses multi-user chacha20), and this
// package always runs Shadowsocks-2022 inbounds multi-user.
const (
	SS2022AES128GCM        = "2022-blake3-aes-128-gcm"
	SS2022AES256GCM        = "2022-blake3-aes-256-gcm"
	SS2022ChaCha20Poly1305 = "2022-blake3-chacha20-poly1305"
)

// SS2022KeyLen returns the key length in bytes that a Shadowsocks-2022
// method requires for both the server PSK and every user key.
func SS2022KeyLen(method string) (int, error) {
	switch method {
	case SS2022AES128GCM:
		return 16, nil
	case SS2022AES256GCM, SS2022ChaCha20Poly1305:
		return 32, nil
	}
	return 0, errs.Field("method", fmt.Sprintf("unknown shadowsocks-2022 method %q", method))
}

// NewSS2022Key generates a random key of the right length for method,
// encoded in standard base64 as Xray and clients expect.
func NewSS2022Key(method string) (string, error) {
	n, err := SS2022KeyLen(method)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating shadowsocks-2022 key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeSS2022Key checks that key is standard base64 of exactly the length
// method requires and not all zeros. The error text is a rule suitable for
// errs.Field; an unknown method is reported as such.
func DecodeSS2022Key(method, key string) ([]byte, error) {
	n, err := SS2022KeyLen(method)
	if err != nil {
		return nil, keyError("cannot be checked: unknown method")
	}
	if key == "" {
		return nil, keyError("is required")
	}
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, keyError("must be standard base64")
	}
	if len(raw) != n {
		return nil, keyError(fmt.Sprintf("must decode to %d bytes for %s, got %d", n, method, len(raw)))
	}
	if allZero(raw) {
		return nil, keyError("must not be all zeros")
	}
	return raw, nil
}

// NewShortID generates a random 8-byte REALITY short id in hex, the longest
// Xray accepts.
func NewShortID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating short id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// randomSecret returns n random bytes in standard base64, for placeholder
// credentials nobody is meant to know.
func randomSecret(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating secret: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
