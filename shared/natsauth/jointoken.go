package natsauth

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// joinTokenPrefix starts every encoded join token; the digit is the
// format's version.
const joinTokenPrefix = "vpnjoin1."

// maxJoinToken bounds what DecodeJoinToken reads: a real token is about
// 1.5 KB.
const maxJoinToken = 16 << 10

// maxJoinURLs bounds the server URLs a token may list.
const maxJoinURLs = 32

// JoinToken is everything a new agent needs to join the fleet, in one line
// an operator pastes on the new host: where the servers are, which CA to
// trust, which node it becomes, and a short-lived credential that may only
// send that node's join request.
type JoinToken struct {
	// URLs are the servers to dial (nats:// or tls://host:port).
	URLs []string `json:"urls"`
	// CAFingerprint pins the servers' CA (hex SHA-256 of its DER). Empty
	// only when every URL is plain nats:// on a loopback address.
	CAFingerprint string `json:"ca_sha256,omitempty"`
	// Node is the node id the agent joins as.
	Node string `json:"node"`
	// TokenID names the token: the join subject and the enrollment record.
	TokenID string `json:"token_id"`
	// JWT and Seed are the join credential (JoinCredential).
	JWT  string `json:"jwt"`
	Seed string `json:"seed"`
	// Expires is when the credential stops working.
	Expires time.Time `json:"expires"`
}

// Encode is the token as one line: a short prefix, then base64url JSON.
func (j JoinToken) Encode() string {
	data, err := json.Marshal(j)
	if err != nil {
		panic("natsauth: encoding a join token: " + err.Error()) // only strings and a time
	}
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(data)
}

// Credential is the join credential the token carries.
func (j JoinToken) Credential() Credential {
	return Credential{JWT: j.JWT, Seed: []byte(j.Seed)}
}

// Options are the connection options of the join: the credential, the
// token's inbox prefix (the only one it may read), and TLS pinned to the
// token's CA when it names one.
func (j JoinToken) Options() ([]nats.Option, error) {
	opts := []nats.Option{
		j.Credential().Option(),
		nats.CustomInboxPrefix(subject.JoinInboxPrefix(j.TokenID)),
	}
	if j.CAFingerprint != "" {
		cfg, err := PinnedClientConfig(j.CAFingerprint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// ServerURLs is URLs joined with commas, as nats.Connect takes them.
func (j JoinToken) ServerURLs() string { return strings.Join(j.URLs, ",") }

// DecodeJoinToken reads a token made by Encode and checks every field: a
// malformed or expired token is an Invalid error naming the field.
func DecodeJoinToken(s string) (JoinToken, error) {
	return decodeJoinToken(s, time.Now())
}

func decodeJoinToken(s string, now time.Time) (JoinToken, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxJoinToken {
		return JoinToken{}, errs.Field("join_token", "is too long to be a join token")
	}
	body, ok := strings.CutPrefix(s, joinTokenPrefix)
	if !ok {
		return JoinToken{}, errs.Field("join_token", "must start with "+joinTokenPrefix)
	}
	data, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return JoinToken{}, errs.Field("join_token", "is not base64url after the prefix (cut or mistyped?)")
	}
	var j JoinToken
	if err := json.Unmarshal(data, &j); err != nil {
		return JoinToken{}, errs.Field("join_token", "does not hold a join token's JSON")
	}
	if err := j.validate(now); err != nil {
		return JoinToken{}, err
	}
	return j, nil
}

// validate checks each field; the first broken one is reported.
func (j JoinToken) validate(now time.Time) error {
	const f = "join_token."
	if len(j.URLs) == 0 || len(j.URLs) > maxJoinURLs {
		return errs.Field(f+"urls", "must list 1-32 server URLs")
	}
	plainLoopback := true
	for _, raw := range j.URLs {
		secure, loopback, ok := parseServerURL(raw)
		if !ok {
			return errs.Field(f+"urls", "must be nats://host:port or tls://host:port")
		}
		plainLoopback = plainLoopback && !secure && loopback
	}
	if j.CAFingerprint == "" && !plainLoopback {
		return errs.Field(f+"ca_sha256", "must be set unless every URL is nats:// on loopback")
	}
	if j.CAFingerprint != "" {
		if fp, err := parseFingerprint(j.CAFingerprint); err != nil || fp != j.CAFingerprint {
			return errs.Field(f+"ca_sha256", "must be 64 lowercase hex digits")
		}
	}
	if !subject.ValidToken(j.Node) {
		return errs.Field(f+"node", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	}
	if !subject.ValidToken(j.TokenID) {
		return errs.Field(f+"token_id", "must be 1-128 characters of A-Z a-z 0-9 _ -")
	}
	kp, err := nkeys.FromSeed([]byte(j.Seed))
	if err != nil {
		return errs.Field(f+"seed", "must be a NATS user seed")
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return errs.Field(f+"seed", "must be a NATS user seed")
	}
	uc, err := jwt.DecodeUserClaims(j.JWT)
	if err != nil {
		return errs.Field(f+"jwt", "must be a signed NATS user JWT")
	}
	if uc.Subject != pub {
		return errs.Field(f+"jwt", "was issued to another key than the seed's")
	}
	if j.Expires.IsZero() {
		return errs.Field(f+"expires", "must be set")
	}
	if uc.Expires != j.Expires.Unix() {
		return errs.Field(f+"expires", "differs from the credential's expiry")
	}
	if !now.Before(j.Expires) {
		return errs.Field(f+"expires", "has passed ("+j.Expires.UTC().Format(time.RFC3339)+"): ask for a new token")
	}
	return nil
}

// parseServerURL accepts nats://host:port and tls://host:port.
func parseServerURL(raw string) (secure, loopback, ok bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return false, false, false
	}
	host, port, err := net.SplitHostPort(u.Host)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return false, false, false
	}
	return u.Scheme == "tls", IsLoopback(host), true
}

// IsLoopback reports whether host (a name or an IP, without port) can only
// be reached from this machine: localhost or a loopback address. Any other
// name, and the unspecified addresses (every interface), are not.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
