package credentials_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestGenerateAndDrop(t *testing.T) {
	var c user.Credentials
	if err := credentials.Generate(&c, "uid", user.SS2022AES256GCM, user.Protocols); err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(c.Shadowsocks.Key)
	if err != nil || len(key) != 32 {
		t.Fatalf("aes-256 key %q: %d bytes, %v", c.Shadowsocks.Key, len(key), err)
	}
	if c.VLESS.Flow != user.FlowVision || len(c.VLESS.UUID) != 36 || c.VLESS.UUID[14] != '4' {
		t.Fatalf("vless %+v", c.VLESS)
	}
	for _, p := range []*user.Proxy{c.SOCKS5, c.HTTP} {
		if p.Username != "uid" || len(p.Password) != credentials.PasswordLen || strings.Trim(p.Password, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Fatalf("proxy account %+v", p)
		}
	}
	if c.SOCKS5.Password == c.HTTP.Password {
		t.Fatal("socks5 and http share a password")
	}
	credentials.Drop(&c, []user.Protocol{user.HTTP})
	if c.VLESS != nil || c.Shadowsocks != nil || c.SOCKS5 != nil || c.HTTP == nil {
		t.Fatalf("after drop %+v", c)
	}
	if err := credentials.Generate(&c, "uid", "", []user.Protocol{"wireguard"}); err == nil {
		t.Fatal("unknown protocol accepted")
	}
}

func TestSS2022KeyLengths(t *testing.T) {
	for method, want := range map[string]int{user.SS2022AES128GCM: 16, user.SS2022AES256GCM: 32, user.SS2022ChaCha20Poly1305: 32} {
		k, err := credentials.SS2022Key(method)
		if err != nil {
			t.Fatal(err)
		}
		if raw, _ := base64.StdEncoding.DecodeString(k); len(raw) != want {
			t.Fatalf("%s: %d bytes, want %d", method, len(raw), want)
		}
	}
	if _, err := credentials.SS2022Key("aes-128-gcm"); err == nil {
		t.Fatal("non-2022 method accepted")
	}
}
