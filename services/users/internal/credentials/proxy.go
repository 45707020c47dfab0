package credentials

import "github.com/vpnfleet/vpnfleet/shared/user"

func init() {
	generators[user.SOCKS5] = func(creds *user.Credentials, o Options) error {
		acct, err := proxyAccount(o.UserID)
		if err != nil {
			return err
		}
		creds.SOCKS5 = acct
		return nil
	}
	generators[user.HTTP] = func(creds *user.Credentials, o Options) error {
		acct, err := proxyAccount(o.UserID)
		if err != nil {
			return err
		}
		creds.HTTP = acct
		return nil
	}
}

// proxyAccount is a SOCKS5 or HTTP account named after the user, with a
// new password; nil with the error when none could be made.
func proxyAccount(userID string) (*user.Proxy, error) {
	pw, err := Password()
	if err != nil {
		return nil, err
	}
	return &user.Proxy{Username: userID, Password: pw}, nil
}
