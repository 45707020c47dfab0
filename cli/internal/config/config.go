// Package config is where the vpn CLI keeps the gateway to talk to and its
// API token: ~/.config/vpn/config.toml (mode 0600), written by `vpn login`;
// VPN_URL and VPN_TOKEN override it, and --url / --token override those.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/BurntSushi/toml"
)

// DefaultURL is the gateway `make run` starts.
const DefaultURL = "http://127.0.0.1:8080"

// File is the content of the config file.
type File struct {
	URL   string `toml:"url"`
	Token string `toml:"token"`
}

// Path returns the config file's path: $VPN_CONFIG, else
// $XDG_CONFIG_HOME/vpn/config.toml, else ~/.config/vpn/config.toml.
func Path(getenv func(string) string) (string, error) {
	if p := getenv("VPN_CONFIG"); p != "" {
		return p, nil
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "vpn", "config.toml"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("finding the config file: neither HOME nor XDG_CONFIG_HOME is set (set VPN_CONFIG)")
	}
	return filepath.Join(home, ".config", "vpn", "config.toml"), nil
}

// Load reads the config file at path; a missing file is an empty File.
func Load(path string) (File, error) {
	var f File
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := toml.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("reading %s: %w (fix or delete it, then run `vpn login`)", path, err)
	}
	return f, nil
}

// Save writes f to path with mode 0600 (its directory 0700), atomically.
func Save(path string, f File) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.toml")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	enc := toml.NewEncoder(tmp)
	werr := enc.Encode(f)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o600)); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Resolve applies the precedence: flag, then environment, then file, then
// the default URL.
func Resolve(flagURL, flagToken string, getenv func(string) string, f File) File {
	out := f
	if v := getenv("VPN_URL"); v != "" {
		out.URL = v
	}
	if v := getenv("VPN_TOKEN"); v != "" {
		out.Token = v
	}
	if flagURL != "" {
		out.URL = flagURL
	}
	if flagToken != "" {
		out.Token = flagToken
	}
	if out.URL == "" {
		out.URL = DefaultURL
	}
	return out
}
