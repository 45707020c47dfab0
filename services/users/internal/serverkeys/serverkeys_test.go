package serverkeys_test

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/serverkeys"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestNewX25519DecodesAndPublicMatchesPrivate(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		p, err := serverkeys.NewX25519()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p.Private] {
			t.Fatal("the same private key twice")
		}
		seen[p.Private] = true
		priv, err := base64.RawURLEncoding.DecodeString(p.Private)
		if err != nil || len(priv) != 32 {
			t.Fatalf("private key %d bytes, %v; want 32 bytes of base64url without padding", len(priv), err)
		}
		pub, err := base64.RawURLEncoding.DecodeString(p.Public)
		if err != nil || len(pub) != 32 {
			t.Fatalf("public key %d bytes, %v", len(pub), err)
		}
		k, err := ecdh.X25519().NewPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k.PublicKey().Bytes(), pub) {
			t.Fatal("public key is not derived from the private key")
		}
		again, err := serverkeys.X25519FromPrivate(p.Private)
		if err != nil || again != p {
			t.Fatalf("X25519FromPrivate gave %+v, %v; want the same pair", again, err)
		}
	}
}

func TestDecodeX25519Rejects(t *testing.T) {
	valid, err := serverkeys.NewX25519()
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(valid.Private)
	tests := []struct {
		name, key string
		want      error
		rule      string
	}{
		{"empty", "", nil, "must decode to 32 bytes"},
		{"padded", base64.URLEncoding.EncodeToString(raw), serverkeys.ErrNotBase64URL, ""},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(valid.Private) + "+", serverkeys.ErrNotBase64URL, ""},
		{"not base64", "!!!!", serverkeys.ErrNotBase64URL, ""},
		{"short", base64.RawURLEncoding.EncodeToString(raw[:31]), nil, "must decode to 32 bytes, not 31"},
		{"all zero", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), serverkeys.ErrAllZero, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := serverkeys.DecodeX25519(tt.key)
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if tt.rule != "" && !strings.Contains(err.Error(), tt.rule) {
				t.Fatalf("err %v, want it to say %q", err, tt.rule)
			}
			if _, err := serverkeys.X25519FromPrivate(tt.key); err == nil {
				t.Fatal("X25519FromPrivate accepted it")
			}
		})
	}
}

func TestSS2022Keys(t *testing.T) {
	for _, m := range []string{user.SS2022AES128GCM, user.SS2022AES256GCM} {
		key, err := serverkeys.NewSS2022Key(m)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := serverkeys.DecodeSS2022Key(m, key)
		n, _ := user.SS2022KeyLen(m)
		if err != nil || len(raw) != n {
			t.Fatalf("%s key decodes to %d bytes, %v; want %d", m, len(raw), err, n)
		}
	}
	k16 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	tests := []struct {
		name, method, key string
	}{
		{"wrong length for method", user.SS2022AES256GCM, k16},
		{"not base64", user.SS2022AES128GCM, "%%%"},
		{"all zero", user.SS2022AES128GCM, base64.StdEncoding.EncodeToString(make([]byte, 16))},
		{"unknown method", "aes-128-gcm", k16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := serverkeys.DecodeSS2022Key(tt.method, tt.key); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestNewShortID(t *testing.T) {
	sid, err := serverkeys.NewShortID()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := hex.DecodeString(sid); err != nil || len(sid) != 8 || len(b) != 4 || strings.ToLower(sid) != sid {
		t.Fatalf("short id %q, want 8 lowercase hex digits", sid)
	}
}
