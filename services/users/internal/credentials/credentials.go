// Package credentials generates users' secrets from crypto/rand, one file
// per protocol of shared/protocol: VLESS UUIDs, Shadowsocks-2022 user keys
// of the method's length, proxy passwords and Outline passwords.
package credentials

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// DefaultMethod is the Shadowsocks-2022 method user keys are made for when
// none is asked: AES-128-GCM supports several users per inbound.
const DefaultMethod = user.SS2022AES128GCM

// passwordAlphabet is what proxy passwords are made of: letters and digits
// need no escaping in any URL or config format.
const passwordAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// PasswordLen is the length of proxy passwords (about 143 bits).
const PasswordLen = 24

// Options are what generating a protocol's credentials may depend on.
type Options struct {
	// UserID is the proxy user name (agents use a user's id as its name
	// on SOCKS5 and HTTP inbounds).
	UserID string
	// SSMethod is the Shadowsocks-2022 method the key is made for (empty:
	// DefaultMethod).
	SSMethod string
}

// generators makes each protocol's credentials, one file per protocol;
// a test checks that every protocol of shared/protocol has one.
var generators = map[user.Protocol]func(creds *user.Credentials, o Options) error{}

// Generate fills creds with new secrets for each protocol in protos,
// leaving the others as they are. userID is the proxy user name (agents
// use a user's id as its name on SOCKS5 and HTTP inbounds); ssMethod is
// the Shadowsocks-2022 method the key is made for (empty: DefaultMethod).
func Generate(creds *user.Credentials, userID, ssMethod string, protos []user.Protocol) error {
	o := Options{UserID: userID, SSMethod: ssMethod}
	for _, p := range protos {
		gen, ok := generators[p]
		if !ok {
			return errs.Field("protocols", fmt.Sprintf("unknown protocol %q", p))
		}
		if err := gen(creds, o); err != nil {
			return err
		}
	}
	return nil
}

// Drop removes the credentials of protocols the user no longer has.
func Drop(creds *user.Credentials, keep []user.Protocol) { protocol.Clear(creds, keep) }

// SS2022Key returns a random key of the method's length in standard base64.
func SS2022Key(method string) (string, error) {
	n, ok := user.SS2022KeyLen(method)
	if !ok {
		return "", errs.Field("shadowsocks_method", fmt.Sprintf("unknown method %q", method))
	}
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating shadowsocks key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Password returns a random proxy password of PasswordLen letters and
// digits, without modulo bias.
func Password() (string, error) {
	out := make([]byte, 0, PasswordLen)
	buf := make([]byte, 64)
	for len(out) < PasswordLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("generating password: %w", err)
		}
		for _, c := range buf {
			// 62*4 = 248: bytes below it map uniformly.
			if c < 248 && len(out) < PasswordLen {
				out = append(out, passwordAlphabet[int(c)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}
