// Package atomicfile replaces files so that a reader, or the agent starting
// again after a crash, finds either the old content or the new one, never a
// torn write: the data goes to a temporary file in the same directory,
// which is then renamed over the target.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// TempPrefix starts the names of temporary files; a directory scanned at
// start may remove leftovers with it (a write that never finished).
const TempPrefix = ".tmp-"

// Write replaces path with data, creating its directory (0700) if needed.
// With synced, the data reaches the disk before the rename, so it also
// survives a power loss: for files whose loss would lose or double-count
// something. Without it, a crash of the process is survived, not of the
// host.
func Write(path string, data []byte, perm os.FileMode, synced bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o700); err == nil {
			f, err = os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil && synced {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
