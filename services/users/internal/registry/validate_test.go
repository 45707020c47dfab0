package registry_test

import (
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

var (
	nameRe        = regexp.MustCompile(`^[A-Za-z0-9_-]{3,32}$`)
	reservedNames = []string{"root", "admin", "system", "daemon", "nobody", "bin"}
	nameAlphabet  = []rune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
)

// TestNameRuleMatchesSpec checks CheckName against an independent
// statement of the rule, on arbitrary strings and on near-valid ones.
func TestNameRuleMatchesSpec(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.OneOf(
			rapid.String(),
			rapid.StringOfN(rapid.SampledFrom(nameAlphabet), 0, 40, -1),
			rapid.StringOfN(rapid.SampledFrom(append(nameAlphabet, 'é', ' ', '.', '/', 0)), 2, 34, -1),
			rapid.Map(rapid.SampledFrom(reservedNames), strings.ToUpper),
		).Draw(t, "name")
		want := nameRe.MatchString(s) && !slices.Contains(reservedNames, strings.ToLower(s))
		if got := registry.CheckName(s) == ""; got != want {
			t.Fatalf("CheckName(%q) accepts=%v, want %v", s, got, want)
		}
	})
}

// TestValidNamesAreAcceptedAndKeyedCaseInsensitively generates valid names
// and checks they are accepted and that every casing maps to one key.
func TestValidNamesAreAcceptedAndKeyedCaseInsensitively(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := rapid.StringOfN(rapid.SampledFrom(nameAlphabet), 3, 32, -1).
			Filter(func(s string) bool { return !slices.Contains(reservedNames, strings.ToLower(s)) }).Draw(t, "name")
		if rule := registry.CheckName(s); rule != "" {
			t.Fatalf("CheckName(%q) = %q", s, rule)
		}
		if registry.NameKey(s) != registry.NameKey(strings.ToUpper(s)) || registry.NameKey(registry.NameKey(s)) != registry.NameKey(s) {
			t.Fatalf("NameKey(%q) depends on case", s)
		}
	})
}

func TestNewUserRejectsEveryBadField(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		req   user.CreateRequest
		field string
	}{
		{"short name", user.CreateRequest{Name: "ab"}, "name"},
		{"reserved name", user.CreateRequest{Name: "Root"}, "name"},
		{"bad email", user.CreateRequest{Name: "abc", Email: "Bob <bob@example.com>"}, "email"},
		{"long note", user.CreateRequest{Name: "abc", Note: strings.Repeat("x", 1025)}, "note"},
		{"bad status", user.CreateRequest{Name: "abc", Status: user.StatusLimited}, "status"},
		{"on hold without days", user.CreateRequest{Name: "abc", Status: user.StatusOnHold}, "on_hold_days"},
		{"on hold with expiry", user.CreateRequest{Name: "abc", Status: user.StatusOnHold, OnHoldDays: 3, ExpiresAt: now.Add(time.Hour)}, "expires_at"},
		{"no protocols", user.CreateRequest{Name: "abc", Protocols: []user.Protocol{}}, "protocols"},
		{"unknown protocol", user.CreateRequest{Name: "abc", Protocols: []user.Protocol{"ftp"}}, "protocols"},
		{"bad method", user.CreateRequest{Name: "abc", ShadowsocksMethod: "aes-256-gcm"}, "shadowsocks_method"},
		{"negative limit", user.CreateRequest{Name: "abc", TrafficLimitBytes: -1}, "traffic_limit_bytes"},
		{"bad reset", user.CreateRequest{Name: "abc", LimitReset: "hour"}, "limit_reset"},
		{"past expiry", user.CreateRequest{Name: "abc", ExpiresAt: now.Add(-time.Second)}, "expires_at"},
		{"empty placement", user.CreateRequest{Name: "abc", Placement: &user.Placement{}}, "placement"},
		{"bad node", user.CreateRequest{Name: "abc", Placement: &user.Placement{Nodes: []string{"a.b"}}}, "placement.nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := registry.NewUser(tt.req, "id", now)
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			for _, f := range errs.FieldsOf(err) {
				if f.Field == tt.field {
					return
				}
			}
			t.Fatalf("field %s not named in %v", tt.field, err)
		})
	}
}

func TestNewUserCredentials(t *testing.T) {
	for _, tt := range []struct {
		method string
		keyLen int
	}{{"", 16}, {user.SS2022AES128GCM, 16}, {user.SS2022AES256GCM, 32}, {user.SS2022ChaCha20Poly1305, 32}} {
		u, err := registry.NewUser(user.CreateRequest{Name: "abc", ShadowsocksMethod: tt.method}, "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		assertUserValid(t, u)
		if n := decodedLen(t, u.Credentials.Shadowsocks.Key); n != tt.keyLen {
			t.Fatalf("method %q: key of %d bytes, want %d", tt.method, n, tt.keyLen)
		}
	}
}

// assertUserValid checks the invariants every stored user keeps.
func assertUserValid(t testing.TB, u user.User) {
	t.Helper()
	if rule := registry.CheckName(u.Name); rule != "" {
		t.Fatalf("user name %q: %s", u.Name, rule)
	}
	if len(u.Protocols) == 0 {
		t.Fatal("user without protocols")
	}
	c := u.Credentials
	has := map[user.Protocol]bool{
		user.VLESSReality:    c.VLESS != nil,
		user.Shadowsocks2022: c.Shadowsocks != nil,
		user.SOCKS5:          c.SOCKS5 != nil,
		user.HTTP:            c.HTTP != nil,
	}
	for p, ok := range has {
		if u.Has(p) != ok {
			t.Fatalf("protocol %s: has=%v, credentials=%v", p, u.Has(p), ok)
		}
	}
	if c.VLESS != nil && (!registry.ValidID(c.VLESS.UUID) || c.VLESS.Flow != user.FlowVision) {
		t.Fatalf("vless credentials %+v", c.VLESS)
	}
	if c.Shadowsocks != nil {
		n, ok := user.SS2022KeyLen(c.Shadowsocks.Method)
		if !ok || decodedLen(t, c.Shadowsocks.Key) != n {
			t.Fatalf("shadowsocks credentials %+v", c.Shadowsocks)
		}
	}
	if u.TrafficLimitBytes < 0 || !slices.Contains(user.LimitResets, u.LimitReset) || !slices.Contains(user.Statuses, u.Status) {
		t.Fatalf("limits %d %q status %q", u.TrafficLimitBytes, u.LimitReset, u.Status)
	}
	if u.Status == user.StatusOnHold && u.OnHoldDays < 1 {
		t.Fatal("on_hold user without days")
	}
}

func decodedLen(t testing.TB, key string) int {
	t.Helper()
	var b []byte
	if err := json.Unmarshal([]byte(`"`+key+`"`), &b); err != nil {
		t.Fatalf("key %q is not standard base64: %v", key, err)
	}
	return len(b)
}

// TestFreeTextRejectsControlCharacters: text another operator's terminal
// prints (note, email) must not carry control characters (ESC starts a
// terminal escape sequence, NUL truncates it in C tools) or the
// bidirectional overrides that make it read as something else. Creates,
// updates and imports are all refused, naming the field.
func TestFreeTextRejectsControlCharacters(t *testing.T) {
	const id = "0b9a3bd4-8a4e-4d0b-9f5f-1d0f1c1e2a3b"
	now := time.Now()
	bad := map[string]string{
		"ESC":           "\x1b]0;owned\x07\x1b[2J",
		"NUL":           "a\x00b",
		"newline":       "a\nb",
		"DEL":           "a\x7fb",
		"C1 CSI":        "a\u009b2Jb",
		"bidi override": "a\u202eb",
	}
	for what, s := range bad {
		for _, tc := range []struct {
			field string
			check func(s string) error
		}{
			{"note", func(s string) error {
				_, err := registry.NewUser(user.CreateRequest{Name: "abc", Note: s}, id, now)
				return err
			}},
			{"email", func(s string) error {
				_, err := registry.NewUser(user.CreateRequest{Name: "abc", Email: "bob" + s + "@example.com"}, id, now)
				return err
			}},
			{"note", func(s string) error { return registry.CheckUpdate(user.UpdateRequest{ID: id, Note: &s}) }},
			{"email", func(s string) error {
				e := "bob" + s + "@example.com"
				return registry.CheckUpdate(user.UpdateRequest{ID: id, Email: &e})
			}},
			{"note", func(s string) error {
				_, fe := registry.Imported(user.User{ID: id, Name: "abc", Note: s}, false, now)
				return errs.Fields(fe...)
			}},
		} {
			t.Run(what+" in "+tc.field, func(t *testing.T) {
				err := tc.check(s)
				if !errors.Is(err, errs.Invalid) {
					t.Fatalf("err %v, want Invalid", err)
				}
				for _, f := range errs.FieldsOf(err) {
					if f.Field == tc.field && strings.Contains(f.Rule, "control character") {
						return
					}
				}
				t.Fatalf("%s not refused for control characters: %v", tc.field, err)
			})
		}
	}
	// Printable text, non-ASCII included, is fine.
	if _, err := registry.NewUser(user.CreateRequest{Name: "abc", Note: "café – team b, 東京", Email: "bob@example.com"}, id, now); err != nil {
		t.Fatal(err)
	}
}
