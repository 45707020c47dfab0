package natsauth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// privateDir creates dir with mode 0700, or narrows an existing one to it:
// everything below is a secret or a file a secret depends on.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return errs.Wrap(errs.Invalid, err, "creating %s", dir)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return errs.Wrap(errs.Invalid, err, "reading %s", dir)
	}
	if fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return errs.Wrap(errs.Invalid, err, "restricting %s to its owner", dir)
		}
	}
	return nil
}

// readSecret reads a file that holds a secret (a seed, a private key). A
// file that group or others may access is refused, not used: the secret
// may already have leaked, and the operator must decide.
func readSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, errs.New(errs.Invalid,
			"%s holds a secret but is accessible by group or others (mode %04o): check who read it, then chmod 600 it",
			path, perm)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, nil
}

// writeFile writes data to path atomically (a temp file in the same
// directory, synced, then renamed) with mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("creating a temp file for %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("setting the mode of %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s to %s: %w", tmp, path, err)
	}
	return nil
}

// loadOrCreateKey reads the nkey seed in path, or creates one with create
// and stores it (0600). A seed of another kind than want is refused.
func loadOrCreateKey(path string, want nkeys.PrefixByte, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	seed, err := readSecret(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		kp, err := create()
		if err != nil {
			return nil, fmt.Errorf("creating the key in %s: %w", path, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("reading the seed of a new key: %w", err)
		}
		if err := writeFile(path, seed, 0o600); err != nil {
			return nil, err
		}
		return kp, nil
	case err != nil:
		return nil, err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "reading the seed in %s", path)
	}
	if prefix, _, err := nkeys.DecodeSeed(bytes.TrimSpace(seed)); err != nil || prefix != want {
		return nil, errs.New(errs.Invalid, "%s does not hold a %s seed", path, prefixName(want))
	}
	return kp, nil
}

// loadText reads a non-secret file; a missing file gives "" and no error.
func loadText(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return string(bytes.TrimSpace(data)), nil
}

func prefixName(p nkeys.PrefixByte) string {
	switch p {
	case nkeys.PrefixByteOperator:
		return "operator"
	case nkeys.PrefixByteAccount:
		return "account"
	case nkeys.PrefixByteUser:
		return "user"
	}
	return p.String()
}
