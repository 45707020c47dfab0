package xray

import "runtime/debug"

// Version returns the Xray-core module version linked into this binary,
// which is the version the module pins (and `make xray` builds), e.g.
// "v1.260327.0"; "" when build information is missing. The agent's default
// Xray image is tagged with it.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/xtls/xray-core" {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version
		}
	}
	return ""
}
