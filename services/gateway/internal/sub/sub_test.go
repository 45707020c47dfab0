package sub

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/node"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func TestFormat(t *testing.T) {
	cases := []struct{ query, ua, want string }{
		{"", "", user.FormatBase64},
		{"", "v2rayNG/1.8", user.FormatBase64},
		{"", "ClashMetaForAndroid/2.10 mihomo", user.FormatClash},
		{"", "clash-verge/1.7", user.FormatClash},
		{"", "Stash/2.4", user.FormatClash},
		{"", "SFA/1.9.0", user.FormatSingBox},
		{"", "sing-box 1.9", user.FormatSingBox},
		{"format=mihomo", "SFA/1.0", user.FormatClash},
		{"format=singbox", "", user.FormatSingBox},
		{"format=base64", "clash", user.FormatBase64},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodGet, "/sub/x?"+c.query, nil)
		r.Header.Set("User-Agent", c.ua)
		if got, err := Format(r); err != nil || got != c.want {
			t.Errorf("%q %q: %q %v, want %q", c.query, c.ua, got, err, c.want)
		}
	}
	if _, err := Format(httptest.NewRequest(http.MethodGet, "/sub/x?format=pdf", nil)); err == nil {
		t.Error("format=pdf accepted")
	}
}

func TestHealthy(t *testing.T) {
	now := time.Now()
	n := node.Node{State: node.StateRunning, HeartbeatAt: now.Add(-14 * time.Second), HeartbeatEvery: 5 * time.Second}
	if !Healthy(n, now) {
		t.Error("a node 14s after a 5s heartbeat is healthy (3 beats)")
	}
	n.HeartbeatAt = now.Add(-16 * time.Second)
	if Healthy(n, now) {
		t.Error("a node 16s after a 5s heartbeat is not healthy")
	}
	n.HeartbeatAt, n.State = now, node.StateStopped
	if Healthy(n, now) {
		t.Error("a stopped node is not healthy")
	}
}

func TestHeaders(t *testing.T) {
	h := http.Header{}
	SetHeaders(h, user.User{Name: "ann", Status: user.StatusActive, TrafficLimitBytes: 100, ExpiresAt: time.Unix(2000000000, 0), Usage: user.Usage{UsedUp: 1, UsedDown: 2}}, user.FormatBase64)
	if got := h.Get("Subscription-Userinfo"); got != "upload=1; download=2; total=100; expire=2000000000" {
		t.Errorf("userinfo %q", got)
	}
	if h.Get("Profile-Update-Interval") != "12" {
		t.Errorf("headers %v", h)
	}
}

// TestFileName checks that a saved subscription gets a file name whose
// extension says its format.
func TestFileName(t *testing.T) {
	cases := []struct{ format, want string }{
		{user.FormatBase64, `attachment; filename="ann.txt"`},
		{user.FormatClash, `attachment; filename="ann.yaml"`},
		{user.FormatSingBox, `attachment; filename="ann.json"`},
	}
	for _, c := range cases {
		t.Run(c.format, func(t *testing.T) {
			h := http.Header{}
			SetHeaders(h, user.User{Name: "ann", Status: user.StatusActive}, c.format)
			if got := h.Get("Content-Disposition"); got != c.want {
				t.Fatalf("Content-Disposition %q, want %q", got, c.want)
			}
		})
	}
}

// TestNodesOf checks that only a served user's subscription lists nodes:
// a disabled, limited or expired user gets none, whatever is healthy.
func TestNodesOf(t *testing.T) {
	healthy := []string{"n1", "n2"}
	for _, st := range user.Statuses {
		t.Run(string(st), func(t *testing.T) {
			got := NodesOf(user.User{Status: st}, healthy)
			if st.Served() {
				if len(got) != 2 {
					t.Fatalf("a %s user's nodes %v, want the healthy ones", st, got)
				}
				return
			}
			if got == nil || len(got) != 0 {
				t.Fatalf("a %s user's nodes %#v, want none (an empty list, not nil: nil is every node)", st, got)
			}
		})
	}
	if got := NodesOf(user.User{Status: user.StatusActive}, nil); got != nil {
		t.Fatalf("a served user with every node healthy: %v, want nil", got)
	}
}
