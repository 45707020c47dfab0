// Package wgserver is the vpn-wireguard workload: a userspace WireGuard
// device (wireguard-go) whose peers the agent adds, changes and removes
// live over the UAPI socket, with one of two data paths:
//
//   - netstack: decrypted packets go into gVisor's userspace TCP/IP stack,
//     which terminates every TCP connection and UDP flow of the tunnel and
//     dials it out from the host, like a proxy. It needs no privilege and
//     no kernel support, and runs in any container.
//   - tun: decrypted packets go to a kernel TUN device; the host routes
//     them (and NATs them out, when set up to). It needs CAP_NET_ADMIN and
//     /dev/net/tun.
//
// The device starts without keys or peers: the agent configures it over
// the socket (package wireguard is its client), so no secret is on a
// command line.
package wgserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Data-path modes.
const (
	ModeNetstack = "netstack"
	ModeTUN      = "tun"
)

// Config is the workload's configuration (flags and env of vpn-wireguard).
type Config struct {
	Socket string `flag:"uapi-socket" env:"VPN_WG_UAPI_SOCKET" help:"unix socket of the UAPI configuration interface (created mode 0600)"`
	Mode   string `flag:"mode" env:"VPN_WG_MODE" help:"data path: netstack (userspace TCP/UDP forwarding, no privilege) or tun (kernel TUN device, needs CAP_NET_ADMIN)"`
	MTU    int    `flag:"mtu" env:"VPN_WG_MTU" help:"tunnel MTU"`
	// TUN mode only.
	Interface string   `flag:"interface" env:"VPN_WG_INTERFACE" help:"tun mode: name of the TUN interface"`
	Addresses []string `flag:"address" env:"VPN_WG_ADDRESS" help:"tun mode: the interface's addresses, comma-separated (the server's address in each pool, e.g. 10.8.0.1/16)"`
	// AllowPrivateNetworks lets users reach loopback, private and
	// link-local destinations (netstack mode). Off by default, as for Xray,
	// so that a user cannot probe the host's own network.
	AllowPrivateNetworks bool `flag:"allow-private-networks" env:"VPN_WG_ALLOW_PRIVATE_NETWORKS" help:"netstack mode: let users reach loopback, private and link-local addresses"`
	// HostAlias is a tunnel address (typically the server's own in the
	// pool, e.g. 10.8.0.1) whose flows are dialed to the host's loopback,
	// port unchanged: how users reach a service of the VPN host itself, a
	// DNS resolver for instance. Netstack mode; empty is none.
	HostAlias string `flag:"host-alias" env:"VPN_WG_HOST_ALIAS" help:"netstack mode: a tunnel address whose flows are dialed to the host's loopback (same port), e.g. to serve DNS from the VPN host"`
	LogLevel  string `flag:"log-level" env:"VPN_WG_LOG_LEVEL" help:"debug, info, warn or error"`
}

// Defaults are the defaults of every field.
func Defaults() Config {
	return Config{Mode: ModeNetstack, MTU: 1420, Interface: "vpnwg0", LogLevel: "info"}
}

// Validate checks c, naming the field and rule broken.
func (c *Config) Validate() error {
	var fe []errs.FieldError
	if c.Socket == "" {
		fe = append(fe, errs.FieldError{Field: "uapi_socket", Rule: "must be set"})
	}
	if c.Mode != ModeNetstack && c.Mode != ModeTUN {
		fe = append(fe, errs.FieldError{Field: "mode", Rule: "must be netstack or tun"})
	}
	if c.MTU < 1280 || c.MTU > 65535 {
		fe = append(fe, errs.FieldError{Field: "mtu", Rule: "must be from 1280 to 65535"})
	}
	if _, err := c.prefixes(); err != nil {
		fe = append(fe, errs.FieldError{Field: "address", Rule: "must be IP/prefix addresses"})
	}
	if c.HostAlias != "" {
		if _, err := netip.ParseAddr(c.HostAlias); err != nil {
			fe = append(fe, errs.FieldError{Field: "host_alias", Rule: "must be an IP address"})
		}
	}
	if c.Mode == ModeTUN && c.Interface == "" {
		fe = append(fe, errs.FieldError{Field: "interface", Rule: "must be set in tun mode"})
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		fe = append(fe, errs.FieldError{Field: "log_level", Rule: "must be debug, info, warn or error"})
	}
	return errs.Fields(fe...)
}

func (c *Config) prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.Addresses))
	for _, s := range c.Addresses {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// Run serves the device until ctx ends: it opens the data path, starts
// the device and answers UAPI requests on the socket. It logs "wireguard
// ready" once the socket accepts requests.
func Run(ctx context.Context, c Config, log *slog.Logger) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var (
		dev tun.Device
		ns  *netstackTUN
		err error
	)
	switch c.Mode {
	case ModeNetstack:
		alias, _ := netip.ParseAddr(c.HostAlias)
		ns, err = newNetstack(ctx, c.MTU, c.AllowPrivateNetworks, alias, log)
		dev = ns
	case ModeTUN:
		prefixes, _ := c.prefixes()
		dev, err = openTUN(c.Interface, c.MTU, prefixes)
	}
	if err != nil {
		return fmt.Errorf("opening the %s data path: %w", c.Mode, err)
	}
	wg := device.NewDevice(dev, conn.NewDefaultBind(), deviceLogger(log))
	defer wg.Close()

	if err := os.MkdirAll(filepath.Dir(c.Socket), 0o700); err != nil {
		return fmt.Errorf("creating the uapi socket's directory: %w", err)
	}
	if err := os.Remove(c.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a stale uapi socket: %w", err)
	}
	lc := net.ListenConfig{}
	ln, err := lc.Listen(ctx, "unix", c.Socket)
	if err != nil {
		return fmt.Errorf("listening on the uapi socket: %w", err)
	}
	if err := os.Chmod(c.Socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("restricting the uapi socket: %w", err)
	}
	log.Info("wireguard ready", logkey.Path, c.Socket, logkey.Kind, c.Mode)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-gctx.Done()
		return ln.Close()
	})
	g.Go(func() error {
		for {
			conn, err := ln.Accept()
			if err != nil {
				if gctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("accepting on the uapi socket: %w", err)
			}
			go serveUAPI(wg, ns, conn, log)
		}
	})
	g.Go(func() error {
		select {
		case <-wg.Wait():
			return errors.New("wireguard device closed")
		case <-gctx.Done():
			return nil
		}
	})
	err = g.Wait()
	_ = os.Remove(c.Socket)
	return err
}

// deviceLogger sends wireguard-go's log lines to log: its verbose lines
// at debug level, its errors at warn (the device recovers from them).
func deviceLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug("wireguard device", logkey.Detail, fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			log.Warn("wireguard device error", logkey.Detail, fmt.Sprintf(format, args...))
		},
	}
}
