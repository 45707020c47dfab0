package wgconf

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func mustKey(t testing.TB) Key {
	t.Helper()
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sample(t testing.TB) Conf {
	psk, err := GeneratePresharedKey()
	if err != nil {
		t.Fatal(err)
	}
	return Conf{
		Interface: Interface{
			PrivateKey: mustKey(t),
			Addresses:  []netip.Prefix{netip.MustParsePrefix("10.8.0.2/32"), netip.MustParsePrefix("fd00:8::2/128")},
			DNS:        []netip.Addr{netip.MustParseAddr("1.1.1.1")},
			MTU:        1420,
		},
		Peers: []Peer{{
			PublicKey:           mustKey(t).PublicKey(),
			PresharedKey:        psk,
			Endpoint:            "vpn.example.com:51820",
			AllowedIPs:          []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")},
			PersistentKeepalive: 25,
		}},
	}
}

func TestRenderParseRoundTrip(t *testing.T) {
	c := sample(t)
	out, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(out)
	if err != nil {
		t.Fatalf("parsing what Render wrote: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip changed the conf:\n got %+v\nwant %+v", got, c)
	}
}

// TestParseWgQuickForms reads the forms wg-quick accepts: any key case,
// comments, repeated list keys, "off" keepalive.
func TestParseWgQuickForms(t *testing.T) {
	priv, pub := mustKey(t), mustKey(t).PublicKey()
	text := "# exported\n[interface]\nprivatekey = " + priv.String() + "  # mine\n" +
		"Address = 10.8.0.2/32\nADDRESS = fd00::2/128\n\n[Peer]\nPublicKey=" + pub.String() +
		"\nAllowedIPs = 10.8.0.0/16\nallowedips = 192.168.0.0/24\nPersistentKeepalive = off\n"
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface.PrivateKey != priv || len(c.Interface.Addresses) != 2 || c.Peers[0].PublicKey != pub ||
		len(c.Peers[0].AllowedIPs) != 2 || c.Peers[0].PersistentKeepalive != 0 {
		t.Fatalf("parsed %+v", c)
	}
}

func TestBadInputNamesFieldAndRule(t *testing.T) {
	priv := mustKey(t)
	head := "[Interface]\nPrivateKey = " + priv.String() + "\nAddress = 10.8.0.2/32\n[Peer]\n"
	cases := []struct {
		name, text, field, rule string
	}{
		{"low-order public key", head + "PublicKey = " + Key{}.String() + "\nAllowedIPs = 0.0.0.0/0\n", "line 5: publickey", RuleKeyPoint},
		{"short key", head + "PublicKey = AAAA\nAllowedIPs = 0.0.0.0/0\n", "line 5: publickey", RuleKeyEncoding},
		{"hook", "[Interface]\nPostUp = rm -rf /\n", "line 2: postup", RuleKnownKey},
		{"bad endpoint", head + "Endpoint = host\n", "line 5: endpoint", RuleEndpoint},
		{"no peer", "[Interface]\nPrivateKey = " + priv.String() + "\nAddress = 10.8.0.2/32\n", "Peer", RuleRequired},
		{"key before section", "PrivateKey = x\n", "line 1", RuleSection},
		{"two keys", head + "PublicKey = " + priv.PublicKey().String() + "\npublickey = " + priv.PublicKey().String() + "\n", "line 6: publickey", RuleOnce},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.text))
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("got %v, want invalid", err)
			}
			for _, f := range errs.FieldsOf(err) {
				if f.Field == tc.field && f.Rule == tc.rule {
					return
				}
			}
			t.Fatalf("fields %v, want %s: %s", errs.FieldsOf(err), tc.field, tc.rule)
		})
	}
}

// TestLowOrderPointsRefused: the eight-torsion points (a zero shared secret
// with anyone) are refused as public keys; generated keys pass.
func TestLowOrderPointsRefused(t *testing.T) {
	low := []string{
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // 0
		"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", // 1
		"4Ot6fDtBuK4WVuP68Z/EatoJjeucMrH9hmIFFl9JuAA=", // order 8
		"X5yVvKNQjCSx0LFVnIPvWwREXMRYHI6G2CJO3dCfEVc=", // order 8
		"7P///////////////////////////////////////38=", // p-1
	}
	for _, s := range low {
		if _, err := ParsePublicKey("peer.public_key", s); !errors.Is(err, errs.Invalid) ||
			errs.FieldsOf(err)[0] != (errs.FieldError{Field: "peer.public_key", Rule: RuleKeyPoint}) {
			t.Errorf("%s: got %v, want %s", s, err, RuleKeyPoint)
		}
	}
	for range 100 {
		pub := mustKey(t).PublicKey()
		if _, err := ParsePublicKey("k", pub.String()); err != nil {
			t.Fatalf("generated key %s refused: %v", pub, err)
		}
	}
}

// FuzzParse: Parse never panics, and whatever it accepts renders and parses
// back to the same conf.
func FuzzParse(f *testing.F) {
	out, err := sample(f).Render()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(out)
	f.Add([]byte("[Interface]\nPrivateKey=\n[Peer]\nAllowedIPs=::/0,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		again, err := c.Render()
		if err != nil {
			t.Fatalf("accepted conf does not render: %v", err)
		}
		c2, err := Parse(again)
		if err != nil {
			t.Fatalf("rendered conf does not parse: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(c, c2) {
			r2, _ := c2.Render()
			if !bytes.Equal(again, r2) {
				t.Fatalf("round trip changed the conf:\n%s\n%s", again, r2)
			}
		}
	})
}
