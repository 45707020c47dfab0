package gateway_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/gateway"
	"github.com/vpnfleet/vpnfleet/shared/node"
)

// TestInstallRoutes: without a token, the gateway serves the installer
// rendered with its own URL, each platform's binaries with their SHA-256,
// and refuses an unknown platform or a binary it does not have with a
// problem naming the field or the file and the setting.
func TestInstallRoutes(t *testing.T) {
	dir := t.TempDir()
	host := runtime.GOARCH
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	agent, err := os.ReadFile(self) // an executable of this platform, as make build leaves vpn-agent
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vpn-agent"), agent, 0o755); err != nil {
		t.Fatal(err)
	}
	arm := []byte("an arm64 xray")
	if err := os.WriteFile(filepath.Join(dir, "xray-linux-arm64"), arm, 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.AgentBinaries = dir }})

	r := h.do("GET", "/install/agent.sh", "", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/x-shellscript") ||
		!strings.HasPrefix(string(r.body), "#!/bin/sh\n") || !strings.Contains(string(r.body), "\ngateway='"+h.url+"'\n") {
		t.Fatalf("script: %d %v\n%.400s", r.status, r.header, r.body)
	}

	r = h.do("GET", "/install/vpn-agent?os=linux&arch="+host, "", nil)
	if r.status != http.StatusOK || string(r.body) != string(agent) || r.header.Get("X-Checksum-Sha256") != sha(agent) {
		t.Fatalf("vpn-agent for linux/%s: %d %v (%d bytes)", host, r.status, r.header, len(r.body))
	}
	r = h.do("GET", "/install/xray?arch=aarch64", "", nil)
	if r.status != http.StatusOK || string(r.body) != string(arm) {
		t.Fatalf("xray for aarch64: %d %s", r.status, r.body)
	}
	r = h.do("GET", "/install/checksums?os=linux&arch="+host, "", nil)
	if want := sha(agent) + "  vpn-agent\n"; r.status != http.StatusOK || string(r.body) != want {
		t.Fatalf("checksums: %d %q, want %q", r.status, r.body, want)
	}

	for _, tc := range []struct {
		path, code, field, detail string
		status                    int
	}{
		{"/install/vpn-agent?os=linux&arch=mips", "invalid_query", "arch", "", http.StatusBadRequest},
		{"/install/vpn-agent", "invalid_query", "arch", "", http.StatusBadRequest},
		{"/install/checksums?os=darwin&arch=arm64", "invalid_query", "os", "", http.StatusBadRequest},
		{"/install/vpn-agent?arch=amd64&colour=red", "invalid_query", "colour", "", http.StatusBadRequest},
		{"/install/vpn-agent?arch=arm64", "agent_binary_missing", "", "no vpn-agent for linux/arm64 in " + dir, http.StatusNotFound},
		{"/install/xray?arch=" + host, "agent_binary_missing", "", "put xray-linux-" + host + " there", http.StatusNotFound},
	} {
		r := h.do("GET", tc.path, "", nil)
		p := h.problem(r)
		if r.status != tc.status || p.Code != tc.code || (tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field)) || !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("GET %s: %d %s, want %d %s naming %q %q", tc.path, r.status, r.body, tc.status, tc.code, tc.field, tc.detail)
		}
	}

	// Enrolling a node answers the one line that installs it.
	var added node.AddResponse
	h.mustJSON("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu1"}, http.StatusCreated, &added)
	if want := "curl -fsSL '" + h.url + "/install/agent.sh' | sh -s -- --token " + added.Token; added.InstallCommand != want {
		t.Fatalf("install command %q, want %q", added.InstallCommand, want)
	}
}

// TestInstallScriptNamesThePublicURL: behind --public-url the script and
// the install command fetch from it, not from the address asked.
func TestInstallScriptNamesThePublicURL(t *testing.T) {
	h := newHarnessWith(t, options{cfg: func(c *gateway.Config) { c.PublicURL = "https://vpn.example.com" }})
	r := h.do("GET", "/install/agent.sh", "", nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "\ngateway='https://vpn.example.com'\n") {
		t.Fatalf("script: %d\n%.600s", r.status, r.body)
	}
	var added node.AddResponse
	h.mustJSON("POST", "/api/v1/nodes", "admin", map[string]any{"name": "eu2"}, http.StatusCreated, &added)
	if !strings.HasPrefix(added.InstallCommand, "curl -fsSL 'https://vpn.example.com/install/agent.sh' | sh -s -- --token vpnjoin1.") {
		t.Fatalf("install command %q", added.InstallCommand)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
