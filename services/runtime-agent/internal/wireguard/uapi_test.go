package wireguard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

const sampleGet = "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n" +
	"listen_port=12912\n" +
	"public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n" +
	"preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52\n" +
	"protocol_version=1\n" +
	"endpoint=[abcd:23::33%2]:51820\n" +
	"last_handshake_time_sec=1700000000\n" +
	"last_handshake_time_nsec=5\n" +
	"tx_bytes=38333\n" +
	"rx_bytes=2224\n" +
	"persistent_keepalive_interval=25\n" +
	"allowed_ip=192.168.4.4/32\n" +
	"public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n" +
	"preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n" +
	"protocol_version=1\n" +
	"last_handshake_time_sec=0\n" +
	"last_handshake_time_nsec=0\n" +
	"tx_bytes=0\n" +
	"rx_bytes=0\n" +
	"persistent_keepalive_interval=0\n" +
	"allowed_ip=10.8.0.3/32\n" +
	"allowed_ip=fd00::3/128\n" +
	"errno=0\n"

func TestParseGet(t *testing.T) {
	d, err := ParseGet(strings.NewReader(sampleGet))
	if err != nil {
		t.Fatal(err)
	}
	if d.ListenPort != 12912 || d.PublicKey.IsZero() || len(d.Peers) != 2 {
		t.Fatalf("device %+v", d)
	}
	p := d.Peers[0]
	if !p.HasPresharedKey || p.Traffic != (Traffic{Uplink: 2224, Downlink: 38333}) || p.PersistentKeepalive != 25 ||
		!p.LastHandshake.Equal(time.Unix(1700000000, 5)) || p.Endpoint.Port() != 51820 {
		t.Fatalf("peer 0 %+v", p)
	}
	q := d.Peers[1]
	if q.HasPresharedKey || !q.LastHandshake.IsZero() || len(q.AllowedIPs) != 2 || q.AllowedIPs[1] != netip.MustParsePrefix("fd00::3/128") {
		t.Fatalf("peer 1 %+v", q)
	}
}

func TestParseGetErrors(t *testing.T) {
	cases := map[string]struct {
		text  string
		class errs.Class
	}{
		"errno invalid":  {"errno=-22\n", errs.Invalid},
		"port in use":    {"errno=-98\n", errs.Conflict},
		"truncated":      {"listen_port=1\n", errs.Internal},
		"bad key":        {"public_key=zz\nerrno=0\n", errs.Internal},
		"negative count": {"public_key=" + strings.Repeat("0", 64) + "\nrx_bytes=-1\nerrno=0\n", errs.Internal},
		"no equals":      {"junk\n", errs.Internal},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseGet(strings.NewReader(tc.text))
			if err == nil || !errors.Is(err, tc.class) {
				t.Fatalf("got %v, want %v", err, tc.class)
			}
		})
	}
}

// FuzzParseGet: the parser never panics, and a reply it accepts has
// counters that are never negative.
func FuzzParseGet(f *testing.F) {
	f.Add(sampleGet)
	f.Add("errno=0\n")
	f.Add("public_key=" + strings.Repeat("ab", 32) + "\nallowed_ip=::/0\nerrno=0\n")
	f.Fuzz(func(t *testing.T, text string) {
		d, err := ParseGet(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, p := range d.Peers {
			if p.Traffic.Uplink < 0 || p.Traffic.Downlink < 0 {
				t.Fatalf("negative counters %+v", p.Traffic)
			}
			for _, a := range p.AllowedIPs {
				if !a.IsValid() {
					t.Fatalf("invalid allowed ip accepted from %q", text)
				}
			}
		}
	})
}
