package version

import "testing"

func TestSemver(t *testing.T) {
	tests := map[string]string{
		"1.2.3":         "1.2.3",
		"1.2.3-rc.1":    "1.2.3-rc.1",
		"dev":           "0.0.0-dev",
		"5800ec4":       "0.0.0-5800ec4",
		"5800ec4-dirty": "0.0.0-5800ec4-dirty",
		"v1.2.3":        "0.0.0-1.2.3",
		"":              "0.0.0-dev",
		"a_b/c":         "0.0.0-a-b-c",
	}
	for in, want := range tests {
		Version = in
		if got := Semver(); got != want {
			t.Errorf("Semver(%q) = %q, want %q", in, got, want)
		}
		if !semverRe.MatchString(Semver()) {
			t.Errorf("Semver(%q) = %q is not semver", in, Semver())
		}
	}
	Version = "dev"
}
