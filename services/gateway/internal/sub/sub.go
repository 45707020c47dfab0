// Package sub is the public subscription URL of a user: a secret token per
// user (kept in the sub_tokens bucket, rotatable), the choice of format a
// client wants (by ?format= or its User-Agent), which nodes count as
// healthy, and the headers subscription clients read.
package sub

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Tokens maps subscription tokens to users and back. Keys are
// "t.<token>" -> user id and "u.<user id>" -> token; a token is valid only
// while both agree, so a rotation interrupted half-way never leaves two
// valid tokens.
type Tokens struct {
	js jetstream.JetStream

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewTokens returns the subscription tokens over js; the bucket is opened
// on first use.
func NewTokens(js jetstream.JetStream) *Tokens { return &Tokens{js: js} }

func (t *Tokens) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.kv != nil {
		return t.kv, nil
	}
	kv, err := t.js.KeyValue(ctx, subject.BucketSubTokens)
	if err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "opening bucket %s", subject.BucketSubTokens)
	}
	t.kv = kv
	return kv, nil
}

// newToken is 256 random bits, base64url: a valid KV key and URL segment.
func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidToken reports whether s has the shape of a subscription token.
func ValidToken(s string) bool { return len(s) == 43 && subject.ValidToken(s) }

// Of returns the token of user id, making one the first time.
func (t *Tokens) Of(ctx context.Context, userID string) (string, error) {
	kv, err := t.bucket(ctx)
	if err != nil {
		return "", err
	}
	for range 5 {
		e, err := kv.Get(ctx, "u."+userID)
		if err == nil {
			return string(e.Value()), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", errs.Wrap(errs.Unavailable, err, "reading subscription token of %s", userID)
		}
		tok := newToken()
		if _, err := kv.Create(ctx, "t."+tok, []byte(userID)); err != nil {
			return "", errs.Wrap(errs.Unavailable, err, "storing subscription token of %s", userID)
		}
		if _, err := kv.Create(ctx, "u."+userID, []byte(tok)); err != nil {
			_ = kv.Delete(ctx, "t."+tok)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // another request made one first: use it
			}
			return "", errs.Wrap(errs.Unavailable, err, "storing subscription token of %s", userID)
		}
		return tok, nil
	}
	return "", errs.New(errs.Conflict, "subscription token of %s keeps changing", userID)
}

// Rotate replaces the token of user id; the old one stops working at once.
func (t *Tokens) Rotate(ctx context.Context, userID string) (string, error) {
	kv, err := t.bucket(ctx)
	if err != nil {
		return "", err
	}
	tok := newToken()
	if _, err := kv.Create(ctx, "t."+tok, []byte(userID)); err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "storing subscription token of %s", userID)
	}
	var old string
	if e, err := kv.Get(ctx, "u."+userID); err == nil {
		old = string(e.Value())
	}
	if _, err := kv.Put(ctx, "u."+userID, []byte(tok)); err != nil {
		_ = kv.Delete(ctx, "t."+tok)
		return "", errs.Wrap(errs.Unavailable, err, "storing subscription token of %s", userID)
	}
	if old != "" {
		if err := kv.Delete(ctx, "t."+old); err != nil {
			return "", errs.Wrap(errs.Unavailable, err, "deleting old subscription token of %s", userID)
		}
	}
	return tok, nil
}

// User returns the id of the user a token belongs to, or NotFound.
func (t *Tokens) User(ctx context.Context, tok string) (string, error) {
	notFound := errs.New(errs.NotFound, "no subscription with this token")
	if !ValidToken(tok) {
		return "", notFound
	}
	kv, err := t.bucket(ctx)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, "t."+tok)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", notFound
	}
	if err != nil {
		return "", errs.Wrap(errs.Unavailable, err, "reading subscription token")
	}
	id := string(e.Value())
	back, err := kv.Get(ctx, "u."+id)
	if err != nil || string(back.Value()) != tok {
		return "", notFound
	}
	return id, nil
}

// Format picks the subscription format: ?format= first (base64, clash,
// mihomo, sing-box, outline), then the client's User-Agent, then base64.
func Format(r *http.Request) (string, error) {
	switch f := strings.ToLower(r.URL.Query().Get("format")); f {
	case "":
	case user.FormatBase64, "v2ray", "links":
		return user.FormatBase64, nil
	case user.FormatClash, "mihomo", "clash-meta", "clash.meta":
		return user.FormatClash, nil
	case user.FormatSingBox, "singbox":
		return user.FormatSingBox, nil
	case user.FormatOutline:
		return user.FormatOutline, nil
	default:
		return "", errs.Field("format", "must be base64, clash (mihomo), sing-box or outline")
	}
	ua := strings.ToLower(r.UserAgent())
	for _, c := range []struct{ needle, format string }{
		{"sing-box", user.FormatSingBox}, {"sfa/", user.FormatSingBox}, {"sfi/", user.FormatSingBox},
		{"sfm/", user.FormatSingBox}, {"sft/", user.FormatSingBox},
		{"mihomo", user.FormatClash}, {"clash", user.FormatClash}, {"stash", user.FormatClash},
	} {
		if strings.Contains(ua, c.needle) {
			return c.format, nil
		}
	}
	return user.FormatBase64, nil
}

// Healthy reports whether a node may be listed in subscriptions: its agent
// is running and its last heartbeat is at most 3 intervals old.
func Healthy(n node.Node, now time.Time) bool {
	every := n.HeartbeatEvery
	if every <= 0 {
		every = DefaultHeartbeat
	}
	return n.State == node.StateRunning && now.Sub(n.HeartbeatAt) <= 3*every
}

// DefaultHeartbeat is assumed for nodes that do not say their interval.
const DefaultHeartbeat = 10 * time.Second

// UpdateIntervalHours is how often clients should refresh (the
// profile-update-interval header).
const UpdateIntervalHours = 12

// NodesOf returns the nodes u's subscription may list: none for a user no
// node serves (disabled, limited, expired: an empty list, which the users
// service reads as "no node"), else healthy (nil: every node).
func NodesOf(u user.User, healthy []string) []string {
	if !u.Status.Served() {
		return []string{}
	}
	return healthy
}

// HealthHeader marks a subscription served without knowing which nodes
// are healthy: HealthUnknown when no node serving the user was healthy at
// the time, so the links of every node are listed rather than none.
const (
	HealthHeader  = "Vpn-Subscription-Health"
	HealthUnknown = "unknown"
)

// extensions name the file a client saves each format as.
var extensions = map[string]string{
	user.FormatBase64:  ".txt",
	user.FormatClash:   ".yaml",
	user.FormatSingBox: ".json",
	user.FormatOutline: ".json",
}

// SetHeaders sets the headers subscription clients read: traffic used and
// allowed, expiry, refresh interval, a title (saying why when no node
// serves the user) and a file name with the format's extension.
func SetHeaders(h http.Header, u user.User, format string) {
	expire := int64(0)
	if !u.ExpiresAt.IsZero() {
		expire = u.ExpiresAt.Unix()
	}
	h.Set("Subscription-Userinfo", fmt.Sprintf("upload=%d; download=%d; total=%d; expire=%d",
		u.Usage.UsedUp, u.Usage.UsedDown, u.TrafficLimitBytes, expire))
	h.Set("Profile-Update-Interval", strconv.Itoa(UpdateIntervalHours))
	title := "vpnfleet " + u.Name
	if !u.Status.Served() {
		title += " (" + string(u.Status) + ")"
	}
	h.Set("Profile-Title", "base64:"+base64.StdEncoding.EncodeToString([]byte(title)))
	h.Set("Content-Disposition", `attachment; filename="`+u.Name+extensions[format]+`"`)
	h.Set("Cache-Control", "no-store")
}
