package xraytest

import (
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestBinaryIsPinnedXray(t *testing.T) {
	out, err := exec.Command(Binary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("xray version: %v\n%s", err, out)
	}
	v, err := xrayVersion()
	if err != nil {
		t.Fatal(err)
	}
	// Module v1.YYMMDD.N is released as Xray YY.M.D.
	if !strings.HasPrefix(string(out), "Xray ") || !strings.HasPrefix(v, "v1.") {
		t.Fatalf("xray version %q for module %s", out, v)
	}
}

func TestCheckConfigRejectsBadConfig(t *testing.T) {
	bad := `{"inbounds":[{"protocol":"vless","port":1,"settings":{"clients":[],"decryption":"none"},
		"streamSettings":{"security":"reality","realitySettings":{"target":"a.example:443","serverNames":["a.example"],
		"privateKey":"short","shortIds":[""]}}}]}`
	if err := CheckConfig(t, Binary(t), []byte(bad)); err == nil {
		t.Fatal("xray accepted a config with a bad reality key")
	}
}

func TestClientConfigs(t *testing.T) {
	bin := Binary(t)
	obs := map[string]Outbound{
		"vless": VLESSReality{
			UUID: "0f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60", Host: "127.0.0.1", Port: 443, SNI: "www.example.com",
			PublicKey: "hSDwCYkwp1R0dJ-v4jPmMFLBlUuzzjdtYOGOhb3Xqmo", ShortID: "0123", Flow: "xtls-rprx-vision",
		},
		"ss":    Shadowsocks2022{Method: "2022-blake3-aes-128-gcm", Password: "dGVzdHRlc3R0ZXN0dGVzdA==:a2V5a2V5a2V5a2V5a2V5MQ==", Host: "127.0.0.1", Port: 8388},
		"socks": SOCKS5{User: "u", Pass: "p", Host: "127.0.0.1", Port: 1080},
		"http":  HTTPProxy{User: "u", Pass: "p", Host: "127.0.0.1", Port: 8080},
	}
	for name, ob := range obs {
		t.Run(name, func(t *testing.T) {
			cfg, err := ClientConfig("127.0.0.1:10808", ob)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConfig(t, bin, cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
}
