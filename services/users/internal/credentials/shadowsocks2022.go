package credentials

import "github.com/vpnfleet/vpnfleet/shared/user"

func init() {
	generators[user.Shadowsocks2022] = func(creds *user.Credentials, o Options) error {
		method := o.SSMethod
		if method == "" {
			method = DefaultMethod
		}
		key, err := SS2022Key(method)
		if err != nil {
			return err
		}
		creds.Shadowsocks = &user.Shadowsocks{Method: method, Key: key}
		return nil
	}
}
