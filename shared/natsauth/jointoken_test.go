package natsauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

const testFingerprint = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// validToken is a join token as the registry issues one, valid for an hour.
func validToken(t testing.TB, dir string) JoinToken {
	t.Helper()
	tr, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	cred, err := tr.JoinCredential("tok1", expires)
	if err != nil {
		t.Fatal(err)
	}
	return JoinToken{
		URLs:          []string{"tls://vpn.example.org:4222", "tls://10.0.0.2:4222"},
		CAFingerprint: testFingerprint,
		Node:          "n1",
		TokenID:       "tok1",
		JWT:           cred.JWT,
		Seed:          string(cred.Seed),
		Expires:       expires,
	}
}

func encodeJSON(v any) string {
	data, _ := json.Marshal(v)
	return joinTokenPrefix + base64.RawURLEncoding.EncodeToString(data)
}

func TestJoinTokenRoundTrip(t *testing.T) {
	j := validToken(t, t.TempDir())
	s := j.Encode()
	if strings.ContainsAny(s, " \n\t") || !strings.HasPrefix(s, joinTokenPrefix) {
		t.Fatalf("encoded token %q is not one clean line", s)
	}
	got, err := DecodeJoinToken(" " + s + "\n")
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if got.Encode() != s || !got.Expires.Equal(j.Expires) || got.Node != "n1" || got.ServerURLs() != "tls://vpn.example.org:4222,tls://10.0.0.2:4222" {
		t.Fatalf("round trip changed the token: %+v", got)
	}
	opts, err := got.Options()
	if err != nil || len(opts) != 3 {
		t.Fatalf("options: %d, %v; want credential, inbox prefix and pinned TLS", len(opts), err)
	}
}

func TestDecodeJoinTokenRejects(t *testing.T) {
	j := validToken(t, t.TempDir())
	other := validToken(t, t.TempDir())
	accountKP, _ := nkeys.CreateAccount()
	accountSeed, _ := accountKP.Seed()
	with := func(change func(*JoinToken)) string {
		c := j
		c.URLs = append([]string(nil), j.URLs...)
		change(&c)
		return c.Encode()
	}
	tests := []struct {
		name  string
		token string
		now   time.Time
		field string
	}{
		{"empty", "", time.Now(), "join_token"},
		{"other prefix", "vpnjoin2." + strings.TrimPrefix(j.Encode(), joinTokenPrefix), time.Now(), "join_token"},
		{"not base64", joinTokenPrefix + "!!!", time.Now(), "join_token"},
		{"cut short", j.Encode()[:len(j.Encode())/2], time.Now(), "join_token"},
		{"not json", joinTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte("[1,2")), time.Now(), "join_token"},
		{"too long", joinTokenPrefix + strings.Repeat("A", maxJoinToken), time.Now(), "join_token"},
		{"no urls", with(func(c *JoinToken) { c.URLs = nil }), time.Now(), "join_token.urls"},
		{"http url", with(func(c *JoinToken) { c.URLs[0] = "http://vpn.example.org:4222" }), time.Now(), "join_token.urls"},
		{"url without port", with(func(c *JoinToken) { c.URLs[0] = "tls://vpn.example.org" }), time.Now(), "join_token.urls"},
		{"url with user", with(func(c *JoinToken) { c.URLs[0] = "tls://a:b@vpn.example.org:4222" }), time.Now(), "join_token.urls"},
		{"url port out of range", with(func(c *JoinToken) { c.URLs[0] = "tls://vpn.example.org:70000" }), time.Now(), "join_token.urls"},
		{"remote without CA", with(func(c *JoinToken) { c.CAFingerprint = "" }), time.Now(), "join_token.ca_sha256"},
		{"tls loopback without CA", with(func(c *JoinToken) { c.URLs = []string{"tls://127.0.0.1:4222"}; c.CAFingerprint = "" }), time.Now(), "join_token.ca_sha256"},
		{"short fingerprint", with(func(c *JoinToken) { c.CAFingerprint = "abcd" }), time.Now(), "join_token.ca_sha256"},
		{"upper-case fingerprint", with(func(c *JoinToken) { c.CAFingerprint = strings.ToUpper(testFingerprint) }), time.Now(), "join_token.ca_sha256"},
		{"bad node", with(func(c *JoinToken) { c.Node = "n1.>" }), time.Now(), "join_token.node"},
		{"no node", with(func(c *JoinToken) { c.Node = "" }), time.Now(), "join_token.node"},
		{"bad token id", with(func(c *JoinToken) { c.TokenID = "t*" }), time.Now(), "join_token.token_id"},
		{"bad seed", with(func(c *JoinToken) { c.Seed = "SUxyz" }), time.Now(), "join_token.seed"},
		{"account seed", with(func(c *JoinToken) { c.Seed = string(accountSeed) }), time.Now(), "join_token.seed"},
		{"bad jwt", with(func(c *JoinToken) { c.JWT = "eyJ.x.y" }), time.Now(), "join_token.jwt"},
		{"jwt of another key", with(func(c *JoinToken) { c.JWT = other.JWT }), time.Now(), "join_token.jwt"},
		{"no expiry", with(func(c *JoinToken) { c.Expires = time.Time{} }), time.Now(), "join_token.expires"},
		{"expiry not the credential's", with(func(c *JoinToken) { c.Expires = c.Expires.Add(time.Hour) }), time.Now(), "join_token.expires"},
		{"expired", j.Encode(), j.Expires, "join_token.expires"},
		{"long expired", j.Encode(), j.Expires.Add(24 * time.Hour), "join_token.expires"},
		{"unknown json only", encodeJSON(map[string]any{"x": 1}), time.Now(), "join_token.urls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeJoinToken(tt.token, tt.now)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			fs := errs.FieldsOf(err)
			if len(fs) != 1 || fs[0].Field != tt.field {
				t.Fatalf("fields %v, want %s", fs, tt.field)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), j.Seed) {
				t.Fatalf("error %q: want one line that does not echo the seed", err)
			}
		})
	}
}

func TestDecodeJoinTokenAcceptsPlainLoopbackWithoutCA(t *testing.T) {
	j := validToken(t, t.TempDir())
	j.URLs, j.CAFingerprint = []string{"nats://127.0.0.1:4222", "nats://localhost:4222", "nats://[::1]:4222"}, ""
	got, err := DecodeJoinToken(j.Encode())
	if err != nil {
		t.Fatal(err)
	}
	opts, err := got.Options()
	if err != nil || len(opts) != 2 {
		t.Fatalf("options: %d, %v; want no TLS", len(opts), err)
	}
}

// FuzzDecodeJoinToken feeds the decoder arbitrary lines: it never panics,
// and whatever it accepts encodes back to a token it accepts unchanged.
func FuzzDecodeJoinToken(f *testing.F) {
	j := validToken(f, f.TempDir())
	f.Add(j.Encode())
	f.Add(j.Encode()[:len(j.Encode())-3])
	f.Add("")
	f.Add(joinTokenPrefix)
	f.Add(joinTokenPrefix + "e30")
	f.Add(encodeJSON(map[string]any{"urls": []string{"nats://127.0.0.1:4222"}, "node": "n1", "token_id": "t"}))
	f.Add(encodeJSON(map[string]any{"urls": "x", "expires": 5}))
	f.Add("vpnjoin1.\x00\xff")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := DecodeJoinToken(s)
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) != 1 {
				t.Fatalf("error %v is not one Invalid field", err)
			}
			return
		}
		again, err := DecodeJoinToken(got.Encode())
		if err != nil {
			t.Fatalf("re-encoding an accepted token: %v", err)
		}
		if again.Encode() != got.Encode() {
			t.Fatalf("re-encoding changed the token")
		}
	})
}
