package registry_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

const fuzzID = "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b"

// FuzzCreateDecoder feeds arbitrary request bodies through the create
// path's decoding and validation: it never panics, a rejection is Invalid
// and names fields, and an accepted request gives a valid user.
func FuzzCreateDecoder(f *testing.F) {
	for _, s := range []string{
		`{"name":"alice"}`,
		`{"name":"Bob_2","email":"b@example.com","protocols":["socks5","http"],"traffic_limit_bytes":1000,"limit_reset":"month"}`,
		`{"name":"carol","status":"on_hold","on_hold_days":30,"placement":{"groups":["eu"]}}`,
		`{"name":"dave","shadowsocks_method":"2022-blake3-aes-256-gcm","expires_at":"2999-01-01T00:00:00Z"}`,
		`{"name":"x","protocols":["wireguard"],"traffic_limit_bytes":-5}`,
		`{"name":"admin","placement":{"nodes":["a b"]}}`,
		`{"name":null,"protocols":null}`,
		`[]`, `"str"`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req user.CreateRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		u, err := registry.NewUser(req, fuzzID, now)
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("rejection %v is not Invalid with fields", err)
			}
			return
		}
		assertUserValid(t, u)
		if u.Name != req.Name || u.ID != fuzzID {
			t.Fatalf("user %q/%q from request %q", u.Name, u.ID, req.Name)
		}
	})
}

// FuzzUpdateDecoder feeds arbitrary update bodies to an existing user: it
// never panics, a rejected update is Invalid and names fields, and an
// accepted one leaves a valid user.
func FuzzUpdateDecoder(f *testing.F) {
	for _, s := range []string{
		`{"id":"` + fuzzID + `","name":"renamed"}`,
		`{"id":"` + fuzzID + `","protocols":["vless-reality"],"note":"x"}`,
		`{"id":"` + fuzzID + `","status":"on_hold","on_hold_days":0}`,
		`{"id":"` + fuzzID + `","status":"expired"}`,
		`{"id":"` + fuzzID + `","expires_at":"2000-01-01T00:00:00Z","clear_expires_at":true}`,
		`{"id":"` + fuzzID + `","placement":{"all":true},"limit_reset":"week","traffic_limit_bytes":0}`,
		`{"id":"nope"}`, `{}`, `null`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	base, err := registry.NewUser(user.CreateRequest{Name: "base"}, fuzzID, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req user.UpdateRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		u := base
		u.Protocols = append([]user.Protocol(nil), base.Protocols...)
		err := registry.ApplyUpdate(&u, req, now)
		if err != nil {
			if !errors.Is(err, errs.Invalid) || len(errs.FieldsOf(err)) == 0 {
				t.Fatalf("rejection %v is not Invalid with fields", err)
			}
			return
		}
		registry.Settle(&u, now)
		assertUserValid(t, u)
		if !reflect.DeepEqual(base.Protocols, []user.Protocol{user.VLESSReality, user.Shadowsocks2022, user.SOCKS5, user.HTTP}) {
			t.Fatal("update changed the original user's protocols")
		}
	})
}
