package daemon_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/waitfor"
)

// subscriptionOf creates a user through vpnd's API as the first admin and
// returns the URL of its subscription, asked with hdr.
func subscriptionOf(t *testing.T, dir string, r ready, name string, hdr http.Header) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := api{t: t, base: r.GatewayURL, token: strings.TrimSpace(string(token))}
	waitfor.Cond(t, 30*time.Second, func() error { // until the registry answers
		return c.try(http.MethodPost, "/api/v1/users", map[string]any{"name": name}, nil, nil)
	})
	var sub struct {
		URL   string `json:"url"`
		Token string `json:"token"`
	}
	c.do(http.MethodGet, "/api/v1/users/"+name+"/subscription", nil, &sub, hdr)
	if sub.Token == "" || !strings.HasSuffix(sub.URL, "/sub/"+sub.Token) {
		t.Fatalf("subscription %+v", sub)
	}
	return sub.URL
}

// TestPublicURLAndServiceFlags starts vpnd with the gateway's and the
// registry's own flags (they used to be unreachable: vpnd hard-coded their
// defaults) and checks that subscription URLs are handed out under
// --public-url, whatever Host the API was called on.
func TestPublicURLAndServiceFlags(t *testing.T) {
	dir := t.TempDir()
	v := start(t, dir, "--agent=false",
		"--public-url", "https://vpn.example.com/",
		"--rate-limit", "200", "--rate-burst", "400", "--upstream-timeout", "4s",
		"--job-workers", "2", "--job-batch", "100", "--job-timeout", "90s", "--request-timeout", "8s",
		"--trusted-proxies", "10.0.0.0/8")
	got := subscriptionOf(t, dir, v.ready, "pat", http.Header{"X-Forwarded-Host": {"ignored.example.net"}})
	if !strings.HasPrefix(got, "https://vpn.example.com/sub/") {
		t.Fatalf("subscription url %s, want one under https://vpn.example.com", got)
	}
	if err := v.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestForwardedHostFromLoopbackProxy checks vpnd without --public-url
// behind a reverse proxy on the same host (loopback is trusted by
// default): the URL is the proxy's public host, not vpnd's loopback one.
func TestForwardedHostFromLoopbackProxy(t *testing.T) {
	dir := t.TempDir()
	v := start(t, dir, "--agent=false")
	got := subscriptionOf(t, dir, v.ready, "quinn", http.Header{
		"X-Forwarded-Host": {"vpn.example.net"}, "X-Forwarded-Proto": {"https"}})
	if !strings.HasPrefix(got, "https://vpn.example.net/sub/") {
		t.Fatalf("subscription url %s, want one under https://vpn.example.net", got)
	}
	if err := v.stop(); err != nil {
		t.Fatal(err)
	}
}
