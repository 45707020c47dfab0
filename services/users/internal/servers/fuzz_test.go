package servers_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/servers"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/server"
)

// FuzzCreateRequest feeds arbitrary bodies through the create path's
// decoding and validation: it never panics, a rejection is Invalid and
// names fields, and an accepted request gives a server whose keys decode,
// whose tags and ports are unique and whose node and name are the
// request's. The seeds run as a plain test.
func FuzzCreateRequest(f *testing.F) {
	for _, s := range []string{
		`{"node":"n1","name":"fra","inbounds":[{"protocol":"vless-reality","port":443,"dest":"www.example.com:443"}]}`,
		`{"node":"n1","name":"a.b-c_d","inbounds":[{"protocol":"shadowsocks-2022","port":8388,"method":"2022-blake3-aes-256-gcm"},{"protocol":"socks5","port":1080,"listen":"::1"},{"protocol":"http","port":8080,"tag":"web"}]}`,
		`{"node":"n1","name":"ip","inbounds":[{"protocol":"vless-reality","port":443,"dest":"[2001:db8::1]:443","server_names":["A.example.com"],"short_ids":["","AB"],"fingerprint":"ios"}]}`,
		`{"node":"n1","name":"imp","inbounds":[{"protocol":"vless-reality","port":443,"dest":"a.com:443","private_key":"ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICA"},{"protocol":"shadowsocks-2022","port":1,"server_key":"MDEyMzQ1Njc4OWFiY2RlZg=="}]}`,
		`{"node":"n1","name":"bad","inbounds":[{"protocol":"vless-reality","port":443,"dest":"1.2.3.4:443"}]}`,
		`{"node":"n 1","name":"","inbounds":[{"protocol":"wireguard","port":0,"tag":"api"},{"protocol":"shadowsocks-2022","method":"2022-blake3-chacha20-poly1305","port":0}]}`,
		`{"node":"n1","name":"dup","inbounds":[{"protocol":"socks5","port":1},{"protocol":"socks5","port":1}]}`,
		`{"node":"n1","name":"k","inbounds":[{"protocol":"socks5","port":1,"private_key":"x","dest":"a:1","method":"m"}]}`,
		`{"inbounds":null}`, `[]`, `"str"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req server.CreateRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		s, err := servers.New(req, testID, now)
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("rejection %v is not Invalid with fields", err)
			}
			return
		}
		assertValid(t, s)
		if s.Node != req.Node || s.Name != req.Name || s.ID != testID || len(s.Inbounds) != len(req.Inbounds) {
			t.Fatalf("server %s/%s with %d inbounds from a request for %s/%s with %d", s.Node, s.Name, len(s.Inbounds), req.Node, req.Name, len(req.Inbounds))
		}
		// What was stored reads back the same.
		data, err = json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back server.Server
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		assertValid(t, back)
	})
}

// FuzzUpdateRequest applies arbitrary update bodies to an existing server:
// it never panics, a rejection is Invalid and names fields, an accepted
// update leaves a valid server, inbounds that keep their tag and protocol
// keep their REALITY keys, and only a change of the inbounds sets the
// status back to pending.
func FuzzUpdateRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":"` + testID + `","name":"renamed"}`,
		`{"id":"` + testID + `","inbounds":[{"protocol":"vless-reality","port":8443,"dest":"www.example.com:443"}]}`,
		`{"id":"` + testID + `","inbounds":[{"protocol":"vless-reality","port":443,"dest":"www.example.com:443"},{"protocol":"shadowsocks-2022","port":8388}]}`,
		`{"id":"` + testID + `","inbounds":[{"protocol":"socks5","tag":"vless-reality","port":443}]}`,
		`{"id":"` + testID + `","inbounds":[]}`,
		`{"id":"nope","name":""}`,
		`{}`, `{`,
	} {
		f.Add([]byte(s))
	}
	base, err := servers.New(server.CreateRequest{Node: "n1", Name: "fra", Inbounds: []server.InboundRequest{vless(443), ss(8388)}}, testID, now)
	if err != nil {
		f.Fatal(err)
	}
	base.Status = server.Status{State: server.StateApplied, PublicHost: "fra.example.net"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req server.UpdateRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		s := base
		c, err := servers.Apply(&s, req)
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("rejection %v is not Invalid with fields", err)
			}
			return
		}
		assertValid(t, s)
		if (s.Status.State == server.StatePending) != c.SpecChanged {
			t.Fatalf("status %s after change %+v", s.Status.State, c)
		}
		for _, in := range s.Inbounds {
			for _, old := range base.Inbounds {
				if in.Tag == old.Tag && in.Protocol == old.Protocol && in.Reality != nil && in.Reality.PrivateKey != old.Reality.PrivateKey {
					if req.Inbounds == nil || !importsKey(*req.Inbounds, in.Tag) {
						t.Fatalf("inbound %s lost its key", in.Tag)
					}
				}
			}
		}
	})
}

func importsKey(ins []server.InboundRequest, tag string) bool {
	for _, in := range ins {
		if (in.Tag == tag || in.Tag == "" && string(in.Protocol) == tag) && in.PrivateKey != "" {
			return true
		}
	}
	return false
}
