package natsauth

import (
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// LoadOrCreateUserKey reads the user nkey seed kept in path, or makes one
// and keeps it (0600, its directory 0700): the key a node's credential is
// minted for, whose seed never leaves the host.
func LoadOrCreateUserKey(path string) (nkeys.KeyPair, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "creating %s", filepath.Dir(path))
	}
	return loadOrCreateKey(path, nkeys.PrefixByteUser, nkeys.CreateUser)
}
