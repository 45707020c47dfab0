package xray

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func b64url(t *testing.T, hexs string) string {
	t.Helper()
	b, err := hex.DecodeString(hexs)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestX25519PublicKeyRFC7748(t *testing.T) {
	// RFC 7748 section 6.1, Alice's key pair.
	priv := b64url(t, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	want := b64url(t, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	got, err := X25519PublicKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("public key %s, want %s", got, want)
	}
}

func TestNewX25519KeyPair(t *testing.T) {
	kp, err := NewX25519KeyPair()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{kp.PrivateKey, kp.PublicKey} {
		if len(k) != 43 || strings.ContainsAny(k, "=+/") {
			t.Fatalf("key %q is not 32 bytes of unpadded base64url", k)
		}
		if _, err := DecodeX25519Key(k); err != nil {
			t.Fatalf("DecodeX25519Key(%q): %v", k, err)
		}
	}
	pub, err := X25519PublicKey(kp.PrivateKey)
	if err != nil || pub != kp.PublicKey {
		t.Fatalf("derived public key %q (%v), want %q", pub, err, kp.PublicKey)
	}
	other, _ := NewX25519KeyPair()
	if other.PrivateKey == kp.PrivateKey {
		t.Fatal("two generated keys are equal")
	}
}

func TestDecodeX25519Key(t *testing.T) {
	valid := base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	tests := []struct {
		name, key string
		ok        bool
	}{
		{"valid", valid, true},
		{"empty", "", false},
		{"padded", base64.URLEncoding.EncodeToString([]byte(strings.Repeat("k", 32))), false},
		{"standard alphabet", strings.Repeat("/", 43), false},
		{"not base64", strings.Repeat("!", 43), false},
		{"31 bytes", base64.RawURLEncoding.EncodeToString(make([]byte, 31)), false},
		{"33 bytes", base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("k", 33))), false},
		{"all zeros", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := DecodeX25519Key(tt.key)
			if tt.ok != (err == nil) {
				t.Fatalf("DecodeX25519Key(%q) err = %v, want ok=%v", tt.key, err, tt.ok)
			}
			if tt.ok && len(raw) != 32 {
				t.Fatalf("decoded %d bytes", len(raw))
			}
		})
	}
	if _, err := X25519PublicKey("short"); !errors.Is(err, errs.Invalid) || errs.FieldsOf(err)[0].Field != "private_key" {
		t.Fatalf("X25519PublicKey of a bad key: %v, want an invalid private_key", err)
	}
}

func TestSS2022Keys(t *testing.T) {
	for method, n := range map[string]int{SS2022AES128GCM: 16, SS2022AES256GCM: 32, SS2022ChaCha20Poly1305: 32} {
		t.Run(method, func(t *testing.T) {
			k, err := NewSS2022Key(method)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil || len(raw) != n {
				t.Fatalf("key %q decodes to %d bytes (%v), want %d", k, len(raw), err, n)
			}
			if _, err := DecodeSS2022Key(method, k); err != nil {
				t.Fatalf("DecodeSS2022Key: %v", err)
			}
		})
	}
	if _, err := NewSS2022Key("aes-128-gcm"); !errors.Is(err, errs.Invalid) {
		t.Fatalf("NewSS2022Key of a non-2022 method: %v, want invalid", err)
	}
	k16 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 16)))
	tests := []struct {
		name, method, key string
		ok                bool
	}{
		{"valid", SS2022AES128GCM, k16, true},
		{"too short for aes-256", SS2022AES256GCM, k16, false},
		{"empty", SS2022AES128GCM, "", false},
		{"url alphabet", SS2022AES128GCM, strings.Repeat("_", 22) + "==", false},
		{"zeros", SS2022AES128GCM, base64.StdEncoding.EncodeToString(make([]byte, 16)), false},
		{"unknown method", "2022-blake3-aes-192-gcm", k16, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeSS2022Key(tt.method, tt.key); tt.ok != (err == nil) {
				t.Fatalf("DecodeSS2022Key(%s, %q) err = %v, want ok=%v", tt.method, tt.key, err, tt.ok)
			}
		})
	}
}

func TestNewShortID(t *testing.T) {
	sid, err := NewShortID()
	if err != nil {
		t.Fatal(err)
	}
	if len(sid) != 16 || strings.Trim(sid, "0123456789abcdef") != "" {
		t.Fatalf("short id %q is not 16 hex digits", sid)
	}
}
