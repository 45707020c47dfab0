package app_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// buildVPN builds the real vpn binary once per benchmark.
func buildVPN(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "vpn")
	out, err := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../../cmd/vpn").CombinedOutput()
	if err != nil {
		b.Fatalf("building vpn: %v\n%s", err, out)
	}
	return bin
}

// BenchmarkVersionWallTime is the CLI's start-up: exec `vpn version`.
//
//	go test -run '^$' -bench VersionWallTime -benchtime 200x ./cli/internal/app
func BenchmarkVersionWallTime(b *testing.B) {
	bin := buildVPN(b)
	b.ResetTimer()
	for range b.N {
		if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
			b.Fatalf("vpn version: %v %s", err, out)
		}
	}
}

// BenchmarkUsersListWallTime is exec `vpn users list` against a gateway
// with the real users service holding 100 users: start-up, one HTTP round
// trip, a table.
//
//	go test -run '^$' -bench UsersListWallTime -benchtime 200x ./cli/internal/app
func BenchmarkUsersListWallTime(b *testing.B) {
	bin := buildVPN(b)
	h := newHarness(b)
	h.login()
	for i := range 100 {
		h.must("users", "create", "user"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	env := append(os.Environ(), "VPN_CONFIG="+h.env["VPN_CONFIG"], "COLUMNS=100")
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(bin, "users", "list")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("vpn users list: %v %s", err, out)
		}
	}
}
