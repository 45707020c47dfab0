package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestOutlineKeys: an Outline server deployed from the CLI gives a user
// with the outline protocol an ss:// access key and a dynamic ssconf://
// key whose URL answers the JSON Outline's apps fetch; a method Outline
// clients cannot use is refused naming the rule.
func TestOutlineKeys(t *testing.T) {
	h := newHarness(t)
	h.login()
	h.putNode("node-1", time.Now())
	r := h.run("servers", "deploy", "bad", "--protocol", "outline", "--port", "8389", "--method", "2022-blake3-aes-128-gcm")
	if r.err == nil || !strings.Contains(r.err.Error(), "inbounds[0].method") || !strings.Contains(r.err.Error(), "Outline clients speak") {
		t.Fatalf("2022 method on an outline server: %v", r.err)
	}
	id := strings.TrimSpace(h.must("servers", "deploy", "outline", "--protocol", "outline", "--port", "8389", "-q").stdout)
	h.applyServer(id)
	h.must("users", "create", "carol", "--protocol", "outline")

	link := strings.TrimSpace(h.must("users", "link", "carol").stdout)
	if !strings.HasPrefix(link, "ss://") || !strings.Contains(link, "@203.0.113.7:8389/?outline=1#") {
		t.Fatalf("link %q", link)
	}
	key := strings.TrimSpace(h.must("users", "sub", "carol", "--format", "outline").stdout)
	u, err := url.Parse(key)
	if err != nil || u.Scheme != "ssconf" {
		t.Fatalf("dynamic key %q: %v", key, err)
	}
	u.Scheme = "http" // the test gateway is plain http; Outline's apps use https
	resp, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var cfg struct {
		Server     string `json:"server"`
		ServerPort int    `json:"server_port"`
		Password   string `json:"password"`
		Method     string `json:"method"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil || cfg.Server != "203.0.113.7" || cfg.ServerPort != 8389 || cfg.Method != "chacha20-ietf-poly1305" || cfg.Password == "" {
		t.Fatalf("dynamic key body %d %s: %v", resp.StatusCode, body, err)
	}

	h.must("users", "create", "dave", "--protocol", "vless-reality")
	if r := h.run("users", "sub", "dave", "--format", "outline"); r.err == nil {
		t.Fatal("an outline key for a user without outline")
	}
}
