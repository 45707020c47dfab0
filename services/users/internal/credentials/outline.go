package credentials

import (
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// An Outline credential is a Shadowsocks password of PasswordLen letters
// and digits (about 143 bits): classic AEAD methods derive the key from
// it, whatever the inbound's method.
func init() {
	generators[protocol.Outline] = func(creds *user.Credentials, _ Options) error {
		pw, err := Password()
		if err != nil {
			return err
		}
		creds.SetKey(protocol.Outline, user.Key{Password: pw})
		return nil
	}
}
