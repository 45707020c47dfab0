package xray

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray/xraytest"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// decoded is the generated config read back generically, as Xray reads it.
type decoded map[string]any

func (d decoded) get(t *testing.T, path ...any) any {
	t.Helper()
	var cur any = map[string]any(d)
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", path, k)
			}
			if cur, ok = m[k]; !ok {
				t.Fatalf("%v: no key %q", path, k)
			}
		case int:
			a, ok := cur.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("%v: no element %d", path, k)
			}
			cur = a[k]
		}
	}
	return cur
}

func build(t *testing.T, s Spec) decoded {
	t.Helper()
	raw, err := BuildConfig(s)
	if err != nil {
		t.Fatalf("BuildConfig: %v", err)
	}
	var d decoded
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	return d
}

func TestBuildConfig(t *testing.T) {
	s := validSpec()
	d := build(t, s)

	if got := d.get(t, "api", "services"); !slices.Equal(toStrings(got), []string{"HandlerService", "StatsService"}) {
		t.Errorf("api.services = %v", got)
	}
	if d.get(t, "api", "tag") != "api" {
		t.Error("api.tag is not api")
	}
	if len(d.get(t, "stats").(map[string]any)) != 0 {
		t.Error("stats is not {}")
	}
	for _, k := range []string{"statsUserUplink", "statsUserDownlink"} {
		if d.get(t, "policy", "levels", "0", k) != true {
			t.Errorf("policy.levels.0.%s is not true", k)
		}
	}
	for _, k := range []string{"statsInboundUplink", "statsInboundDownlink"} {
		if d.get(t, "policy", "system", k) != true {
			t.Errorf("policy.system.%s is not true", k)
		}
	}
	if d.get(t, "log", "loglevel") != "warning" || d.get(t, "log", "access") != "none" {
		t.Errorf("log = %v", d.get(t, "log"))
	}

	// The API inbound listens on loopback only and is routed to the API.
	if d.get(t, "inbounds", 0, "tag") != "api" || d.get(t, "inbounds", 0, "protocol") != "dokodemo-door" ||
		d.get(t, "inbounds", 0, "listen") != "127.0.0.1" || d.get(t, "inbounds", 0, "port") != 10085.0 {
		t.Errorf("api inbound = %v", d.get(t, "inbounds", 0))
	}
	if d.get(t, "routing", "rules", 0, "outboundTag") != "api" ||
		!slices.Equal(toStrings(d.get(t, "routing", "rules", 0, "inboundTag")), []string{"api"}) {
		t.Errorf("api routing rule = %v", d.get(t, "routing", "rules", 0))
	}
	// Private networks are blocked by default.
	if d.get(t, "routing", "rules", 1, "outboundTag") != OutboundBlock ||
		!slices.Contains(toStrings(d.get(t, "routing", "rules", 1, "ip")), "127.0.0.0/8") {
		t.Errorf("private block rule = %v", d.get(t, "routing", "rules", 1))
	}
	if d.get(t, "outbounds", 0, "protocol") != "freedom" || d.get(t, "outbounds", 1, "protocol") != "blackhole" {
		t.Errorf("outbounds = %v", d.get(t, "outbounds"))
	}

	vless := d.get(t, "inbounds", 1).(map[string]any)
	if vless["protocol"] != "vless" || vless["listen"] != "0.0.0.0" || vless["port"] != 443.0 {
		t.Errorf("vless inbound = %v", vless)
	}
	if d.get(t, "inbounds", 1, "settings", "decryption") != "none" ||
		d.get(t, "inbounds", 1, "settings", "clients", 0, "email") != "u1" ||
		d.get(t, "inbounds", 1, "settings", "clients", 0, "flow") != FlowVision {
		t.Errorf("vless settings = %v", d.get(t, "inbounds", 1, "settings"))
	}
	rs := d.get(t, "inbounds", 1, "streamSettings", "realitySettings").(map[string]any)
	if rs["target"] != "www.example.com:443" || rs["privateKey"] != s.Inbounds[0].Reality.PrivateKey ||
		!slices.Equal(toStrings(rs["serverNames"]), []string{"www.example.com"}) ||
		!slices.Equal(toStrings(rs["shortIds"]), []string{"0123456789abcdef", ""}) {
		t.Errorf("realitySettings = %v", rs)
	}
	if d.get(t, "inbounds", 1, "streamSettings", "security") != "reality" {
		t.Error("vless security is not reality")
	}

	// Shadowsocks-2022 runs multi-user: a placeholder first, then the users.
	if d.get(t, "inbounds", 2, "protocol") != "shadowsocks" || d.get(t, "inbounds", 2, "listen") != "::" ||
		d.get(t, "inbounds", 2, "settings", "method") != SS2022AES128GCM ||
		d.get(t, "inbounds", 2, "settings", "clients", 0, "email") != placeholderID ||
		d.get(t, "inbounds", 2, "settings", "clients", 1, "email") != "u1" {
		t.Errorf("ss inbound = %v", d.get(t, "inbounds", 2))
	}
	for i, proto := range map[int]string{3: "socks", 4: "http"} {
		if d.get(t, "inbounds", i, "protocol") != proto ||
			d.get(t, "inbounds", i, "settings", "accounts", 0, "user") != placeholderID ||
			d.get(t, "inbounds", i, "settings", "accounts", 1, "user") != "u1" {
			t.Errorf("%s inbound = %v", proto, d.get(t, "inbounds", i))
		}
	}
	if d.get(t, "inbounds", 3, "settings", "auth") != "password" {
		t.Error("socks auth is not password")
	}

	s.AllowPrivateNetworks = true
	s.LogLevel = "debug"
	d = build(t, s)
	if len(d.get(t, "routing", "rules").([]any)) != 1 || d.get(t, "log", "loglevel") != "debug" {
		t.Errorf("with private networks allowed: rules %v, log %v", d.get(t, "routing", "rules"), d.get(t, "log"))
	}
}

func TestBuildConfigRejectsInvalidSpec(t *testing.T) {
	s := validSpec()
	s.Inbounds[0].Port = 0
	if _, err := BuildConfig(s); !errors.Is(err, errs.Invalid) {
		t.Fatalf("BuildConfig of an invalid spec: %v", err)
	}
}

// TestXrayAcceptsConfig has the real Xray check generated configs, with and
// without users.
func TestXrayAcceptsConfig(t *testing.T) {
	bin := xraytest.Binary(t)
	s := validSpec()
	for _, users := range []bool{true, false} {
		if !users {
			for i := range s.Inbounds {
				s.Inbounds[i].Users = nil
			}
		}
		raw, err := BuildConfig(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := xraytest.CheckConfig(t, bin, raw); err != nil {
			t.Fatalf("users=%v: %v", users, err)
		}
	}
}

func toStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, e := range a {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}
