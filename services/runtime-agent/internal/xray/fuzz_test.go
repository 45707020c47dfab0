package xray

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// FuzzDecodeX25519Key: any input either decodes to a usable 32-byte key or
// is rejected with a rule, never a panic; accepted keys derive a public key.
func FuzzDecodeX25519Key(f *testing.F) {
	f.Add("qG6mpTX6IKdmMqbm0fo3pVUbf8QzSVd6Y-2yQ5iB0GY")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("qG6mpTX6IKdmMqbm0fo3pVUbf8QzSVd6Y-2yQ5iB0GY=")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		raw, err := DecodeX25519Key(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("rejection without a rule")
			}
			return
		}
		if len(raw) != 32 || allZero(raw) {
			t.Fatalf("accepted %q as %x", s, raw)
		}
		if _, err := X25519PublicKey(s); err != nil {
			t.Fatalf("accepted key %q has no public key: %v", s, err)
		}
	})
}

// FuzzDecodeSS2022Key: accepted keys have exactly the method's length.
func FuzzDecodeSS2022Key(f *testing.F) {
	f.Add(SS2022AES128GCM, "dGVzdHRlc3R0ZXN0dGVzdA==")
	f.Add(SS2022AES256GCM, "dGVzdHRlc3R0ZXN0dGVzdA==")
	f.Add("none", "")
	f.Fuzz(func(t *testing.T, method, key string) {
		raw, err := DecodeSS2022Key(method, key)
		if err != nil {
			return
		}
		n, lerr := SS2022KeyLen(method)
		if lerr != nil || len(raw) != n || base64.StdEncoding.EncodeToString(raw) == "" {
			t.Fatalf("accepted %s key %q as %d bytes", method, key, len(raw))
		}
	})
}

// FuzzSpec: any JSON spec is either rejected as Invalid with field errors,
// or valid and then turns into a config that is JSON. Never a panic.
func FuzzSpec(f *testing.F) {
	valid, err := json.Marshal(validSpec())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add([]byte(`{"api_listen":"127.0.0.1:1","inbounds":[{"tag":"a","protocol":"socks5","port":1}]}`))
	f.Add([]byte(`{"inbounds":[{"protocol":"vless-reality","reality":{}}]}`))
	f.Add([]byte(`{"inbounds":[{"protocol":"shadowsocks-2022","shadowsocks":{"method":"2022-blake3-aes-256-gcm"},"users":[{}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s Spec
		if json.Unmarshal(data, &s) != nil {
			return
		}
		err := s.Validate()
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("Validate() = %v, want invalid with fields", err)
			}
			return
		}
		raw, err := BuildConfig(s)
		if err != nil {
			t.Fatalf("valid spec does not build: %v", err)
		}
		if !json.Valid(raw) {
			t.Fatal("config is not JSON")
		}
	})
}
