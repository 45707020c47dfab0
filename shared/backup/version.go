package backup

import (
	"strconv"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// checkVersion refuses a file of a newer layout, and one written by a
// newer release when both this build and the writer are releases (a build
// from a commit has no order with others: the format version decides).
func checkVersion(format int, product string) error {
	switch {
	case format < 1:
		return corrupt("format version %d", format)
	case format > FormatVersion:
		return errs.WithCode(errs.New(errs.Invalid,
			"backup was written by a newer vpnfleet (%s, file format %d); this version (%s) reads format %d and older: restore it with %s or later",
			product, format, version.Version, FormatVersion, product), CodeNewer)
	}
	theirs, ok1 := release(product)
	ours, ok2 := release(version.Version)
	if ok1 && ok2 && newer(theirs, ours) {
		return errs.WithCode(errs.New(errs.Invalid,
			"backup was written by vpnfleet %s, newer than this version (%s): restore it with %s or later",
			product, version.Version, product), CodeNewer)
	}
	return nil
}

// release parses a release version "1.2.3" or "v1.2.3" (no pre-release).
func release(v string) ([3]int, bool) {
	var out [3]int
	parts := strings.Split(strings.TrimPrefix(v, "v"), ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || (len(p) > 1 && p[0] == '0') {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func newer(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return false
}
