package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// Why a token is refused. Each is Unauthorized.
var (
	ErrMissing = errs.New(errs.Unauthorized, "no API token")
	ErrInvalid = errs.New(errs.Unauthorized, "API token not recognised")
	ErrRevoked = errs.New(errs.Unauthorized, "API token revoked")
	ErrExpired = errs.New(errs.Unauthorized, "API token expired")
)

// Token is a token's record in the tokens bucket. Hash is never sent to
// clients (the API clears it).
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      string    `json:"hash,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// CreatedBy is the id of the token that created this one ("" for the
	// first admin token, made by vpnd at first start).
	CreatedBy string    `json:"created_by,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Public returns t without its hash.
func (t Token) Public() Token {
	t.Hash = ""
	return t
}

// Limits of a token's fields.
const (
	MaxNameLen = 64
	MaxTTL     = 10 * 365 * 24 * time.Hour
)

// Store keeps tokens in the tokens bucket and checks presented tokens,
// caching records briefly so a request costs no round trip. A revocation
// through this store takes effect at once; through another gateway replica,
// within CacheTTL.
type Store struct {
	js       jetstream.JetStream
	cacheTTL time.Duration
	now      func() time.Time

	mu    sync.Mutex
	kv    jetstream.KeyValue
	cache map[string]cached
}

type cached struct {
	tok Token
	at  time.Time
}

const maxCached = 10_000

// NewStore returns a store over js; the bucket is opened on first use.
func NewStore(js jetstream.JetStream, cacheTTL time.Duration) *Store {
	return &Store{js: js, cacheTTL: cacheTTL, now: time.Now, cache: map[string]cached{}}
}

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.js.KeyValue(ctx, subject.BucketTokens)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketTokens)
	}
	s.kv = kv
	return kv, nil
}

// ValidateNew checks the fields of a token to create.
func ValidateNew(name string, role Role, ttl time.Duration) error {
	var fe []errs.FieldError
	if name == "" || utf8.RuneCountInString(name) > MaxNameLen || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		fe = append(fe, errs.FieldError{Field: "name", Rule: fmt.Sprintf("must be 1-%d printable characters", MaxNameLen)})
	}
	if !role.Valid() {
		fe = append(fe, errs.FieldError{Field: "role", Rule: "must be admin, operator or viewer"})
	}
	if ttl < 0 || ttl > MaxTTL {
		fe = append(fe, errs.FieldError{Field: "ttl", Rule: "must be between 0 (never expires) and 87600h"})
	}
	return errs.Fields(fe...)
}

// Create makes a token and returns its record and the token itself, which
// exists nowhere else: the caller shows it once.
func (s *Store) Create(ctx context.Context, name string, role Role, ttl time.Duration, createdBy string) (Token, string, error) {
	if err := ValidateNew(name, role, ttl); err != nil {
		return Token{}, "", err
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return Token{}, "", err
	}
	secret, id := newToken()
	now := s.now().UTC().Round(0)
	t := Token{ID: id, Name: name, Role: role, Hash: Hash(secret), CreatedAt: now, CreatedBy: createdBy}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return Token{}, "", fmt.Errorf("encoding token %s: %w", id, err)
	}
	if _, err := kv.Create(ctx, id, data); err != nil {
		return Token{}, "", errs.Wrap(errs.Unavailable, err, "storing token %s", id)
	}
	return t, secret, nil
}

// Put stores a record as it is; tests use it to plant expired tokens.
func (s *Store) Put(ctx context.Context, t Token) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encoding token %s: %w", t.ID, err)
	}
	if _, err := kv.Put(ctx, t.ID, data); err != nil {
		return errs.Wrap(errs.Unavailable, err, "storing token %s", t.ID)
	}
	s.evict(t.ID)
	return nil
}

// Get returns the record of token id.
func (s *Store) Get(ctx context.Context, id string) (Token, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Token{}, err
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Token{}, errs.New(errs.NotFound, "token %s not found", id)
	}
	if err != nil {
		return Token{}, errs.Wrap(errs.Unavailable, err, "reading token %s", id)
	}
	var t Token
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return Token{}, fmt.Errorf("decoding token %s: %w", id, err)
	}
	return t, nil
}

// List returns every token, newest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "listing tokens")
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k)
	}
	out := []Token{}
	for _, id := range ids {
		t, err := s.Get(ctx, id)
		if errors.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Token) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Empty reports whether no token exists yet (the first start).
func (s *Store) Empty(ctx context.Context) (bool, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return false, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return false, errs.Wrap(errs.Unavailable, err, "listing tokens")
	}
	empty := true
	for range lister.Keys() {
		empty = false
	}
	return empty, nil
}

// Revoke marks token id revoked; revoking twice is harmless.
func (s *Store) Revoke(ctx context.Context, id string) (Token, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Token{}, err
	}
	for {
		e, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Token{}, errs.New(errs.NotFound, "token %s not found", id)
		}
		if err != nil {
			return Token{}, errs.Wrap(errs.Unavailable, err, "reading token %s", id)
		}
		var t Token
		if err := json.Unmarshal(e.Value(), &t); err != nil {
			return Token{}, fmt.Errorf("decoding token %s: %w", id, err)
		}
		if !t.RevokedAt.IsZero() {
			s.evict(id)
			return t, nil
		}
		t.RevokedAt = s.now().UTC().Round(0)
		data, err := json.Marshal(t)
		if err != nil {
			return Token{}, fmt.Errorf("encoding token %s: %w", id, err)
		}
		if _, err := kv.Update(ctx, id, data, e.Revision()); err != nil {
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // changed meanwhile: read again
			}
			return Token{}, errs.Wrap(errs.Unavailable, err, "revoking token %s", id)
		}
		s.evict(id)
		return t, nil
	}
}

func (s *Store) evict(id string) {
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
}

// Authenticate returns the record of a presented token, or one of
// ErrMissing, ErrInvalid, ErrRevoked, ErrExpired, or an Unavailable error
// when the bucket cannot be read.
func (s *Store) Authenticate(ctx context.Context, token string) (Token, error) {
	if token == "" {
		return Token{}, ErrMissing
	}
	id, ok := IDOf(token)
	if !ok {
		return Token{}, ErrInvalid
	}
	now := s.now()
	s.mu.Lock()
	c, hit := s.cache[id]
	s.mu.Unlock()
	t := c.tok
	if !hit || now.Sub(c.at) > s.cacheTTL {
		var err error
		t, err = s.Get(ctx, id)
		if errors.Is(err, errs.NotFound) {
			return Token{}, ErrInvalid
		}
		if err != nil {
			return Token{}, err
		}
		s.mu.Lock()
		if len(s.cache) >= maxCached {
			clear(s.cache)
		}
		s.cache[id] = cached{tok: t, at: now}
		s.mu.Unlock()
	}
	switch {
	case !matches(token, t.Hash):
		return Token{}, ErrInvalid
	case !t.RevokedAt.IsZero():
		return Token{}, ErrRevoked
	case !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt):
		return Token{}, ErrExpired
	}
	return t, nil
}
