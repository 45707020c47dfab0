// Package xraytest runs the real Xray in tests: it finds or builds the
// binary pinned by the module (Binary), starts Xray processes that are
// always killed when the test ends (Start), runs a real Xray client for a
// share link's fields with a local SOCKS5 port to dial through (StartClient)
// and provides the local servers those tests need: a TLS 1.3 site to be a
// REALITY dest (StartTLSDest) and a plain HTTP target (StartHTTPTarget).
//
// Nothing here is a mock: tests that use it prove that a generated config
// and a generated link really carry traffic.
package xraytest
