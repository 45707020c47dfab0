// Package version holds the build's version, set at link time by the
// Makefile (-ldflags "-X .../shared/version.Version=...").
package version

// Version is the product version of this build.
var Version = "dev"
