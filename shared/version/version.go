// Package version holds the build's version, set at link time by the
// Makefile (-ldflags "-X .../shared/version.Version=...").
package version

import (
	"regexp"
	"strings"
)

// Version is the product version of this build.
var Version = "dev"

// Semver returns Version in semantic-version form, as NATS micro services
// require: a build from a commit ("5800ec4-dirty") becomes
// "0.0.0-5800ec4-dirty".
func Semver() string {
	if semverRe.MatchString(Version) {
		return Version
	}
	pre := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, strings.TrimPrefix(Version, "v"))
	pre = strings.Trim(pre, ".-")
	if pre == "" {
		pre = "dev"
	}
	return "0.0.0-" + pre
}

// semverRe is the SemVer 2.0 grammar, without build metadata.
var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
