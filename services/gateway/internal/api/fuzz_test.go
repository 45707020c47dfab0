package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/gateway/internal/problem"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// checkDecoded is the property every decoder keeps: it either accepts the
// input and the value re-encodes and decodes to itself, or it refuses it
// with a 4xx problem that has a code.
func checkDecoded[T any](t *testing.T, v T, err error, validate func(T) error) {
	t.Helper()
	if err != nil {
		var p *problem.Problem
		if !errors.As(err, &p) || p.Status < 400 || p.Status > 499 || p.Code == "" {
			t.Fatalf("refusal is not a 4xx problem: %#v", err)
		}
		return
	}
	if err := validate(v); err != nil && errs.ClassOf(err) != errs.Invalid {
		t.Fatalf("validation failed with class %s: %v", errs.ClassOf(err), err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding %#v: %v", v, err)
	}
	if _, err := DecodeJSON[T](strings.NewReader(string(data)), "application/json", 1<<20); err != nil {
		t.Fatalf("re-decoding %s: %v", data, err)
	}
}

func FuzzDecodeCreateUser(f *testing.F) {
	for _, s := range []string{
		`{"name":"alice"}`, `{"name":"alice","protocols":["vless-reality"],"traffic_limit_bytes":1073741824,"expires_at":"2030-01-01T00:00:00Z"}`,
		`{"name":"bob","placement":{"nodes":["n1"]},"status":"on_hold","on_hold_days":30}`,
		`{"name":1}`, `{"nme":"x"}`, `{`, ``, `null`, `[]`, `{"name":"x"}{}`, `{"expires_at":"tomorrow"}`,
		`{"name":"\u0000"}`, `{"traffic_limit_bytes":1e400}`,
	} {
		f.Add(s, "application/json")
	}
	f.Add(`{"name":"a"}`, "text/plain")
	f.Add(`{"name":"a"}`, "application/merge-patch+json; charset=utf-8")
	f.Fuzz(func(t *testing.T, body, ct string) {
		v, err := DecodeJSON[user.CreateRequest](strings.NewReader(body), ct, 4096)
		checkDecoded(t, v, err, ValidateCreate)
	})
}

func FuzzDecodeUpdateUser(f *testing.F) {
	for _, s := range []string{
		`{"note":"vip"}`, `{"expected_revision":3,"status":"disabled"}`, `{"clear_expires_at":true,"expires_at":"2030-01-01T00:00:00Z"}`,
		`{"protocols":["socks5","http"]}`, `{"id":"x"}`, `{"traffic_limit_bytes":-1}`, `{"expected_revision":-1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		v, err := DecodeJSON[UpdateUserRequest](strings.NewReader(body), "application/json", 4096)
		checkDecoded(t, v, err, ValidateUpdate)
	})
}

func FuzzDecodeDeploy(f *testing.F) {
	for _, s := range []string{
		`{"node":"n1","name":"reality","inbounds":[{"protocol":"vless-reality","port":443,"dest":"www.example.com:443"}]}`,
		`{"node":"n1","name":"ss","inbounds":[{"protocol":"shadowsocks-2022","port":8388,"method":"2022-blake3-aes-256-gcm"}]}`,
		`{"node":"n.>","name":"x","inbounds":[]}`, `{"inbounds":[{"port":"443"}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		v, err := DecodeJSON[server.CreateRequest](strings.NewReader(body), "application/json", 4096)
		checkDecoded(t, v, err, ValidateDeploy)
	})
}

func FuzzDecodeCreateToken(f *testing.F) {
	for _, s := range []string{`{"name":"ci","role":"viewer"}`, `{"name":"ci","role":"admin","ttl":"720h"}`, `{"name":"","role":"root","ttl":"-1h"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		v, err := DecodeJSON[CreateTokenRequest](strings.NewReader(body), "application/json", 4096)
		checkDecoded(t, v, err, func(r CreateTokenRequest) error { _, err := ParseTokenRequest(r); return err })
	})
}

func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"kind":"import","data":"bmFtZQphbGljZQo=","format":"csv","dry_run":true}`,
		`{"kind":"disable","filter":{"status":"active","name_prefix":"eu-"}}`,
		`{"kind":"extend","extend_by":"30d","filter":{"expires_before":"2030-01-01T00:00:00Z"}}`,
		`{"kind":"set_limit","traffic_limit_bytes":0,"filter":{"usage_above":1}}`,
		`{"kind":"move","nodes":["fra-1"],"filter":{"node":"n.>"}}`,
		`{"kind":"generate","count":5,"name_prefix":"g","template":{"protocols":["socks5"]}}`,
		`{"kind":"explode"}`, `{"kind":"import","data":"***"}`, `{"filter":[]}`, `{"kind":"import","policy":"maybe"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		v, err := DecodeJobJSON(strings.NewReader(body), "application/json", 1<<16)
		checkDecoded(t, v, err, ValidateJob)
	})
}

func FuzzDecodeJobForm(f *testing.F) {
	part := func(name, value string) string {
		return "--B\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
	}
	file := "--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"u.csv\"\r\nContent-Type: text/csv\r\n\r\nname\nalice\n\r\n"
	for _, s := range []string{
		file + "--B--\r\n",
		part("dry_run", "true") + part("format", "csv") + file + "--B--\r\n",
		part("kind", "disable") + file + "--B--\r\n",
		part("skip_invalid", "yes") + file + "--B--\r\n",
		file + file + "--B--\r\n",
		part("x", "1") + "--B--\r\n",
		"--B\r\n", "", "--B--",
	} {
		f.Add(s, "multipart/form-data; boundary=B")
	}
	f.Add(file, "multipart/form-data")
	f.Fuzz(func(t *testing.T, body, ct string) {
		v, err := DecodeJobForm(strings.NewReader(body), ct, 1<<16)
		checkDecoded(t, v, err, ValidateJob)
	})
}

func FuzzQueries(f *testing.F) {
	for _, s := range []string{
		"limit=10&sort=-name&status=active", "cursor=abc&name_prefix=al", "limit=0", "limit=99999999999999999999",
		"status=x&protocol=y&sort=z", "node=a.b", "kind=user,audit&since=5", "kind=&since=-1", "%zz",
		"state=running&limit=10", "state=sleeping&limit=501",
		"from=2030-01-01T00:00:00Z&to=2030-01-02T00:00:00Z&step=1h", "step=-1s&from=x", "status=all&severity=critical&node=n1", "node=a.b&status=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		if _, err := ListQuery(q); err != nil {
			checkDecoded(t, 0, err, func(int) error { return nil })
		}
		if _, _, _, err := RangeQuery(q); err != nil {
			checkDecoded(t, 0, err, func(int) error { return nil })
		}
		if _, err := AlertsQuery(q); err != nil {
			checkDecoded(t, 0, err, func(int) error { return nil })
		}
		if _, err := JobsQuery(q); err != nil {
			checkDecoded(t, 0, err, func(int) error { return nil })
		}
		r := httptest.NewRequest(http.MethodGet, "/api/v1/events", nil)
		r.URL.RawQuery = q.Encode()
		if _, err := EventsQuery(r); err != nil {
			checkDecoded(t, 0, err, func(int) error { return nil })
		}
	})
}
