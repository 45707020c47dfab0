package xray

import (
	"errors"
	"slices"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// validSpec returns a spec with one inbound of each protocol and one user
// on each; every case of TestValidate breaks it in one place.
func validSpec() Spec {
	return Spec{
		APIListen: "127.0.0.1:10085",
		Inbounds: []Inbound{
			{
				Tag: "vless", Protocol: VLESSReality, Port: 443,
				Reality: &Reality{
					ServerNames: []string{"www.example.com"},
					Dest:        "www.example.com:443",
					PrivateKey:  "qG6mpTX6IKdmMqbm0fo3pVUbf8QzSVd6Y-2yQ5iB0GY",
					ShortIDs:    []string{"0123456789abcdef", ""},
				},
				Users: []User{{ID: "u1", UUID: "0f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f60", Flow: FlowVision}},
			},
			{
				Tag: "ss", Protocol: Shadowsocks2022, Listen: "::", Port: 8388,
				Shadowsocks: &Shadowsocks{Method: SS2022AES128GCM, Key: "dGVzdHRlc3R0ZXN0dGVzdA=="},
				Users:       []User{{ID: "u1", Key: "a2V5a2V5a2V5a2V5a2V5MQ=="}},
			},
			{Tag: "socks", Protocol: SOCKS5, Listen: "0.0.0.0", Port: 1080, Users: []User{{ID: "u1", Password: "p"}}},
			{Tag: "http", Protocol: HTTP, Port: 8080, Users: []User{{ID: "u1", Password: "p"}}},
		},
	}
}

func TestValidateAcceptsValidSpec(t *testing.T) {
	if err := validSpec().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Spec)
		field string
	}{
		{"api not loopback", func(s *Spec) { s.APIListen = "0.0.0.0:10085" }, "api_listen"},
		{"api not ip:port", func(s *Spec) { s.APIListen = "localhost:10085" }, "api_listen"},
		{"api port zero", func(s *Spec) { s.APIListen = "127.0.0.1:0" }, "api_listen"},
		{"log level", func(s *Spec) { s.LogLevel = "loud" }, "log_level"},
		{"no inbounds", func(s *Spec) { s.Inbounds = nil }, "inbounds"},
		{"tag reserved", func(s *Spec) { s.Inbounds[0].Tag = "api" }, "inbounds[0].tag"},
		{"tag charset", func(s *Spec) { s.Inbounds[0].Tag = "a b" }, "inbounds[0].tag"},
		{"duplicate tag", func(s *Spec) { s.Inbounds[1].Tag = "vless" }, "inbounds[1].tag"},
		{"listen not ip", func(s *Spec) { s.Inbounds[0].Listen = "example.com" }, "inbounds[0].listen"},
		{"port zero", func(s *Spec) { s.Inbounds[0].Port = 0 }, "inbounds[0].port"},
		{"port too big", func(s *Spec) { s.Inbounds[0].Port = 65536 }, "inbounds[0].port"},
		{"port taken by api", func(s *Spec) { s.Inbounds[2].Port = 10085 }, "inbounds[2].port"},
		{"port taken", func(s *Spec) { s.Inbounds[3].Port = 443 }, "inbounds[3].port"},
		{"unknown protocol", func(s *Spec) { s.Inbounds[2].Protocol = "wireguard" }, "inbounds[2].protocol"},
		{"reality missing", func(s *Spec) { s.Inbounds[0].Reality = nil }, "inbounds[0].reality"},
		{"reality on socks", func(s *Spec) { s.Inbounds[2].Reality = s.Inbounds[0].Reality }, "inbounds[2].reality"},
		{"no server names", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = nil }, "inbounds[0].reality.server_names"},
		{"sni is an ip", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{"1.2.3.4"} }, "inbounds[0].reality.server_names[0]"},
		{"sni wildcard", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{"*.example.com"} }, "inbounds[0].reality.server_names[0]"},
		{"sni with port", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{"example.com:443"} }, "inbounds[0].reality.server_names[0]"},
		{"sni uppercase", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{"Example.com"} }, "inbounds[0].reality.server_names[0]"},
		{"sni bad label", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{"-a.example.com"} }, "inbounds[0].reality.server_names[0]"},
		{"sni empty", func(s *Spec) { s.Inbounds[0].Reality.ServerNames = []string{""} }, "inbounds[0].reality.server_names[0]"},
		{"dest without port", func(s *Spec) { s.Inbounds[0].Reality.Dest = "www.example.com" }, "inbounds[0].reality.dest"},
		{"dest port range", func(s *Spec) { s.Inbounds[0].Reality.Dest = "www.example.com:70000" }, "inbounds[0].reality.dest"},
		{"dest port zero", func(s *Spec) { s.Inbounds[0].Reality.Dest = "www.example.com:0" }, "inbounds[0].reality.dest"},
		{"dest bad host", func(s *Spec) { s.Inbounds[0].Reality.Dest = "exa mple.com:443" }, "inbounds[0].reality.dest"},
		{"private key short", func(s *Spec) { s.Inbounds[0].Reality.PrivateKey = "qG6mpTX6IKdmMqbm" }, "inbounds[0].reality.private_key"},
		{"private key zero", func(s *Spec) {
			s.Inbounds[0].Reality.PrivateKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		}, "inbounds[0].reality.private_key"},
		{"private key padded", func(s *Spec) { s.Inbounds[0].Reality.PrivateKey += "=" }, "inbounds[0].reality.private_key"},
		{"no short ids", func(s *Spec) { s.Inbounds[0].Reality.ShortIDs = nil }, "inbounds[0].reality.short_ids"},
		{"short id odd", func(s *Spec) { s.Inbounds[0].Reality.ShortIDs = []string{"abc"} }, "inbounds[0].reality.short_ids[0]"},
		{"short id long", func(s *Spec) { s.Inbounds[0].Reality.ShortIDs = []string{"0123456789abcdef00"} }, "inbounds[0].reality.short_ids[0]"},
		{"short id not hex", func(s *Spec) { s.Inbounds[0].Reality.ShortIDs = []string{"zz"} }, "inbounds[0].reality.short_ids[0]"},
		{"ss missing", func(s *Spec) { s.Inbounds[1].Shadowsocks = nil }, "inbounds[1].shadowsocks"},
		{"ss unknown method", func(s *Spec) { s.Inbounds[1].Shadowsocks.Method = "aes-128-gcm" }, "inbounds[1].shadowsocks.method"},
		{"ss chacha multi-user", func(s *Spec) { s.Inbounds[1].Shadowsocks.Method = SS2022ChaCha20Poly1305 }, "inbounds[1].shadowsocks.method"},
		{"ss server key length", func(s *Spec) { s.Inbounds[1].Shadowsocks.Method = SS2022AES256GCM }, "inbounds[1].shadowsocks.key"},
		{"ss user key length", func(s *Spec) { s.Inbounds[1].Users[0].Key = "dGVzdA==" }, "inbounds[1].users[0].key"},
		{"ss user key missing", func(s *Spec) { s.Inbounds[1].Users[0].Key = "" }, "inbounds[1].users[0].key"},
		{"user id empty", func(s *Spec) { s.Inbounds[0].Users[0].ID = "" }, "inbounds[0].users[0].id"},
		{"user id uppercase", func(s *Spec) { s.Inbounds[0].Users[0].ID = "Bob" }, "inbounds[0].users[0].id"},
		{"user id separator", func(s *Spec) { s.Inbounds[0].Users[0].ID = "a>>>b" }, "inbounds[0].users[0].id"},
		{"user id colon", func(s *Spec) { s.Inbounds[2].Users[0].ID = "a:b" }, "inbounds[2].users[0].id"},
		{"user id reserved", func(s *Spec) { s.Inbounds[2].Users[0].ID = placeholderID }, "inbounds[2].users[0].id"},
		{"duplicate user", func(s *Spec) { s.Inbounds[2].Users = append(s.Inbounds[2].Users, s.Inbounds[2].Users[0]) }, "inbounds[2].users[1].id"},
		{"uuid bad", func(s *Spec) { s.Inbounds[0].Users[0].UUID = "not-a-uuid" }, "inbounds[0].users[0].uuid"},
		{"flow bad", func(s *Spec) { s.Inbounds[0].Users[0].Flow = "xtls-rprx-direct" }, "inbounds[0].users[0].flow"},
		{"vless with password", func(s *Spec) { s.Inbounds[0].Users[0].Password = "p" }, "inbounds[0].users[0].password"},
		{"socks without password", func(s *Spec) { s.Inbounds[2].Users[0].Password = "" }, "inbounds[2].users[0].password"},
		{"http password control char", func(s *Spec) { s.Inbounds[3].Users[0].Password = "a\nb" }, "inbounds[3].users[0].password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.edit(&s)
			err := s.Validate()
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("Validate() = %v, want an invalid error", err)
			}
			fields := errs.FieldsOf(err)
			if !slices.ContainsFunc(fields, func(f errs.FieldError) bool { return f.Field == tt.field }) {
				t.Fatalf("Validate() fields = %v, want one for %s", fields, tt.field)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	s := validSpec()
	s.APIListen = ""
	s.Inbounds[0].Port = -1
	s.Inbounds[1].Shadowsocks.Key = ""
	if n := len(errs.FieldsOf(s.Validate())); n != 3 {
		t.Fatalf("got %d field errors, want 3", n)
	}
}
