// Command vpn-wireguard is the WireGuard workload the agent runs (as a
// process or in a container, like Xray): a userspace WireGuard device
// (wireguard-go) whose keys and peers the agent sets live over a UAPI
// socket. See package wgserver for its two data paths.
//
//	vpn-wireguard --uapi-socket /run/vpn/wg-1.sock [--mode netstack|tun]
package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wgserver"
	"github.com/vpnfleet/vpnfleet/shared/config"
	"github.com/vpnfleet/vpnfleet/shared/lifecycle"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

func main() { lifecycle.Main("vpn-wireguard", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := wgserver.Defaults()
	if err := config.Load("vpn-wireguard", &c, args, getenv, stdout); err != nil {
		return err
	}
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: lvl})).With(logkey.Service, "vpn-wireguard")
	return wgserver.Run(ctx, c, log)
}
