package reconcile

import (
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/xray"
)

// TestUserCounts: a server is off by every desired user not held with its
// current credentials on each inbound it belongs on, and by every user
// held that is not desired there.
func TestUserCounts(t *testing.T) {
	ann := testUser()
	bob := testUser()
	bob.ID = "1f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f61"
	bad := testUser() // a VLESS UUID Xray cannot take: not desired there
	bad.ID = "2f8c2a6e-3b1d-4c57-9e0a-1b2c3d4e5f62"
	bad.Credentials.VLESS.UUID = "NOT-A-UUID"
	r := &Reconciler{users: map[string]*member{ann.ID: memberOf(ann), bob.ID: memberOf(bob), bad.ID: memberOf(bad)}}
	vless := xray.Inbound{Tag: "vless", Protocol: xray.VLESSReality}
	socks := xray.Inbound{Tag: "socks", Protocol: xray.SOCKS5}
	spec := xray.Spec{Inbounds: []xray.Inbound{vless, socks}}
	fp := func(id string, in xray.Inbound) string {
		_, f, ok := r.users[id].on(in)
		if !ok {
			t.Fatalf("%s not on %s", id, in.Tag)
		}
		return f
	}
	all := func() applied {
		return applied{
			"vless": {ann.ID: fp(ann.ID, vless), bob.ID: fp(bob.ID, vless)},
			"socks": {ann.ID: fp(ann.ID, socks), bob.ID: fp(bob.ID, socks), bad.ID: fp(bad.ID, socks)},
		}
	}
	tests := []struct {
		name                          string
		ap                            func() applied
		desired, held, extra, holding int
	}{
		{"exactly the desired users", all, 3, 3, 0, 3},
		{"none yet", func() applied { return applied{} }, 3, 0, 0, 0},
		{"one inbound of a user missing", func() applied { a := all(); delete(a["socks"], bob.ID); return a }, 3, 2, 0, 3},
		{"old credentials", func() applied { a := all(); a["vless"][ann.ID] = unknownFP; return a }, 3, 2, 0, 3},
		{"a user not desired", func() applied { a := all(); a["vless"]["gone"] = "x"; return a }, 3, 3, 1, 4},
		{"a user on an inbound it does not belong on", func() applied { a := all(); a["vless"][bad.ID] = "x"; return a }, 3, 3, 1, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, h, e, hold := r.userCounts(spec, tc.ap())
			if d != tc.desired || h != tc.held || e != tc.extra || hold != tc.holding {
				t.Fatalf("userCounts = %d desired, %d held, %d extra, %d holding; want %d, %d, %d, %d",
					d, h, e, hold, tc.desired, tc.held, tc.extra, tc.holding)
			}
		})
	}
}
