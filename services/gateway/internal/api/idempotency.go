package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// An Idempotency-Key makes a retried create safe: the retry gets what the
// first attempt made. The key is the client's, so the gateway binds it to
// what it may mean: the token that sent it, the route, and the body.
//
//   - The key a service remembers is a hash of the token id, the route,
//     the client's key and the body's fingerprint. Another token's key,
//     however equal, is another key: it never returns this token's user
//     and its credentials. Two different bodies never share a key in the
//     registry, so concurrent creates with one key and different names are
//     independent creates, never one user holding the other's name claim.
//   - The gateway also remembers, for as long as the registry remembers
//     keys, which body each (token, route, key) was first sent with, and
//     answers another body 422 idempotency_key_reused before anything
//     travels. That memory is the process's own: after a restart, or on
//     another replica, a different body with a used key is simply another
//     create (never the first body's result).
type idempotency struct {
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	seen map[string]firstBody
}

type firstBody struct {
	fingerprint string
	until       time.Time
}

// maxIdempotencyKeys bounds the bodies remembered; past it, expired ones
// are dropped, and when none has expired, all are.
const maxIdempotencyKeys = 100_000

func newIdempotency(ttl time.Duration) *idempotency {
	return &idempotency{ttl: ttl, now: time.Now, seen: map[string]firstBody{}}
}

// claim binds scope to fingerprint unless scope is bound to another body.
func (m *idempotency) claim(scope, fingerprint string) bool {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.seen[scope]; ok && now.Before(b.until) {
		return b.fingerprint == fingerprint
	}
	if len(m.seen) >= maxIdempotencyKeys {
		for k, b := range m.seen {
			if !now.Before(b.until) {
				delete(m.seen, k)
			}
		}
		if len(m.seen) >= maxIdempotencyKeys {
			clear(m.seen)
		}
	}
	m.seen[scope] = firstBody{fingerprint: fingerprint, until: now.Add(m.ttl)}
	return true
}

// forget unbinds scope from fingerprint: the request made nothing, so the
// key is free for another body.
func (m *idempotency) forget(scope, fingerprint string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.seen[scope]; ok && b.fingerprint == fingerprint {
		delete(m.seen, scope)
	}
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// idempotent binds the client's key (sent as field: the Idempotency-Key
// header or the body's idempotency_key) to the caller's token, the route
// and body, a request decoded and checked, without the key. It returns
// the key to send upstream, and done, to call with the upstream's answer.
func (s *Server) idempotent(r *http.Request, route, field, key string, body any) (string, func(error), error) {
	data, err := json.Marshal(body)
	if err != nil {
		return "", nil, fmt.Errorf("fingerprinting a %s request: %w", route, err)
	}
	fingerprint := hashOf(string(data))
	scope := hashOf(infoOf(r).tok.ID, route, key)
	if !s.idem.claim(scope, fingerprint) {
		p := problem.WithStatus(http.StatusUnprocessableEntity, errs.Invalid, problem.CodeIdempotencyKeyReused,
			fmt.Sprintf("this token sent this idempotency key with another body in the last %s", s.idem.ttl),
			"a key names one request: send the same body again to get its result, or use a new key for a new request")
		p.Errors = []errs.FieldError{{Field: field, Rule: "must not be reused with a different body"}}
		return "", nil, p
	}
	done := func(err error) {
		if err == nil {
			return
		}
		switch errs.ClassOf(err) {
		case errs.Invalid, errs.Conflict, errs.NotFound, errs.Forbidden:
			s.idem.forget(scope, fingerprint) // refused: nothing was made
		}
	}
	return hashOf(scope, fingerprint), done, nil
}
