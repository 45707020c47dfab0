// Package auth is who may call the gateway: API tokens (random, shown once,
// stored as a SHA-256 hash in the tokens bucket), the roles they carry,
// and per-token rate limits.
//
// A token reads "vpn_<id>_<secret>": the id (12 hex digits) is the visible,
// non-secret handle used to list and revoke it; the secret is 256 random
// bits in hex. Only SHA-256(token) is kept.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strings"
)

// Role is what a token may do.
type Role string

// The roles, from most to least powerful.
const (
	// Admin may do everything, including managing tokens.
	Admin Role = "admin"
	// Operator manages users, servers and jobs.
	Operator Role = "operator"
	// Viewer reads, and sees no secrets.
	Viewer Role = "viewer"
)

// Roles lists every role, most powerful first.
var Roles = []Role{Admin, Operator, Viewer}

func (r Role) rank() int {
	switch r {
	case Admin:
		return 3
	case Operator:
		return 2
	case Viewer:
		return 1
	}
	return 0
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether a token of role r may call something that needs
// role need.
func (r Role) Allows(need Role) bool { return r.rank() >= need.rank() && r.Valid() }

const (
	tokenPrefix = "vpn_"
	idLen       = 12 // hex digits
	secretLen   = 64 // hex digits: 256 bits
)

// newToken returns a fresh token and its id.
func newToken() (token, id string) {
	b := make([]byte, idLen/2+secretLen/2)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	id = hex.EncodeToString(b[:idLen/2])
	return tokenPrefix + id + "_" + hex.EncodeToString(b[idLen/2:]), id
}

// IDOf returns the id of a well-formed token.
func IDOf(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", false
	}
	if !isHex(rest[:idLen]) || !isHex(rest[idLen+1:]) {
		return "", false
	}
	return rest[:idLen], true
}

// ValidID reports whether s has the shape of a token id.
func ValidID(s string) bool { return len(s) == idLen && isHex(s) }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Hash is what is stored of a token: hex SHA-256.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// matches compares a token with a stored hash in constant time.
func matches(token, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(Hash(token)), []byte(hash)) == 1
}
