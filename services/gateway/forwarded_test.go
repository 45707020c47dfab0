package gateway_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/services/gateway/internal/api"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// TestSubscriptionURLBehindAProxy checks where subscription URLs point:
// --public-url wins; without it, X-Forwarded-Host and X-Forwarded-Proto
// are honoured from a trusted proxy (loopback by default, which is where
// the test client connects from) and ignored from anyone else, who gets a
// URL on the request's own Host.
func TestSubscriptionURLBehindAProxy(t *testing.T) {
	fwd := []string{"X-Forwarded-Host", "vpn.example.com, inner.example", "X-Forwarded-Proto", "https"}
	tests := []struct {
		name string
		cfg  func(*gateway.Config)
		hdr  []string
		want func(h *harness) string // the base before /sub/
	}{
		{"a trusted proxy's forwarded host and scheme", nil, fwd,
			func(*harness) string { return "https://vpn.example.com" }},
		{"a trusted proxy's host alone keeps the scheme", nil, []string{"X-Forwarded-Host", "vpn.example.com"},
			func(*harness) string { return "http://vpn.example.com" }},
		{"an untrusted peer's headers are ignored",
			func(c *gateway.Config) { c.TrustedProxies = []string{"192.0.2.0/24"} }, fwd,
			func(h *harness) string { return h.url }},
		{"no trusted proxies at all",
			func(c *gateway.Config) { c.TrustedProxies = nil }, fwd,
			func(h *harness) string { return h.url }},
		{"public url wins over forwarded headers",
			func(c *gateway.Config) { c.PublicURL = "https://sub.example.org/" }, fwd,
			func(*harness) string { return "https://sub.example.org" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarnessWith(t, options{noHealth: true, cfg: tt.cfg})
			h.createUser("ivy")
			var s api.Subscription
			r := h.do("GET", "/api/v1/users/ivy/subscription", "operator", nil, tt.hdr...)
			if r.status != http.StatusOK {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if err := json.Unmarshal(r.body, &s); err != nil {
				t.Fatal(err)
			}
			if want := tt.want(h) + "/sub/" + s.Token; s.URL != want {
				t.Fatalf("url %s, want %s", s.URL, want)
			}
			for f, u := range s.Formats {
				if !strings.HasPrefix(u, s.URL+"?format=") {
					t.Errorf("format %s: %s", f, u)
				}
			}
		})
	}
}

// TestConfigRejectsBadProxiesAndPublicURL checks the new settings'
// validation, naming the field.
func TestConfigRejectsBadProxiesAndPublicURL(t *testing.T) {
	tests := []struct {
		name, field string
		set         func(*gateway.Config)
	}{
		{"not a cidr", "trusted_proxies", func(c *gateway.Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }},
		{"a host name", "trusted_proxies", func(c *gateway.Config) { c.TrustedProxies = []string{"proxy.local"} }},
		{"no scheme", "public_url", func(c *gateway.Config) { c.PublicURL = "vpn.example.com" }},
		{"ftp", "public_url", func(c *gateway.Config) { c.PublicURL = "ftp://vpn.example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := gateway.Defaults()
			tt.set(&c)
			err := c.Validate()
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			fe := errs.FieldsOf(err)
			if len(fe) != 1 || fe[0].Field != tt.field {
				t.Fatalf("fields %+v, want %s", fe, tt.field)
			}
		})
	}
	c := gateway.Defaults()
	c.TrustedProxies = []string{"10.1.2.3", "fd00::/8"}
	c.PublicURL = "https://vpn.example.com/base"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
