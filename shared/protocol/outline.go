package protocol

import (
	"github.com/vpnfleet/vpnfleet/shared/server"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Outline is Shadowsocks with a classic AEAD method, the only kind
// Outline's apps speak, served by Xray with one password per user on a
// multi-user inbound. The credential is a password (user.Key.Password,
// under Credentials.Keys); the inbound names the method
// (server.Shadowsocks with no server key). Users get it only when they
// ask for it: it is not a default protocol.
const Outline user.Protocol = "outline"

// The classic AEAD methods Outline clients speak.
const (
	ChaCha20IETFPoly1305 = "chacha20-ietf-poly1305"
	AES128GCM            = "aes-128-gcm"
	AES256GCM            = "aes-256-gcm"
)

var outline = Descriptor{
	Name:          Outline,
	Engine:        server.EngineXray,
	Has:           func(c user.Credentials) bool { _, ok := c.Key(Outline); return ok },
	Clear:         func(c *user.Credentials) { c.DropKey(Outline) },
	RequestFields: []string{"method"},
	Methods:       []string{ChaCha20IETFPoly1305, AES128GCM, AES256GCM},
	MethodRule:    "must be a method Outline clients speak: " + ChaCha20IETFPoly1305 + ", " + AES128GCM + " or " + AES256GCM,
}
