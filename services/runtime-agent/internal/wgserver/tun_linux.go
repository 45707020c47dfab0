package wgserver

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/tun"
)

// openTUN creates the kernel TUN interface name, gives it prefixes and
// brings it up. Routing and NAT out of the host are the host's: the
// interface goes when the device is closed.
func openTUN(name string, mtu int, prefixes []netip.Prefix) (tun.Device, error) {
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("creating tun %s: %w", name, err)
	}
	real, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, err
	}
	link, err := netlink.LinkByName(real)
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("finding tun %s: %w", real, err)
	}
	for _, p := range prefixes {
		addr, err := netlink.ParseAddr(p.String())
		if err != nil {
			dev.Close()
			return nil, err
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			dev.Close()
			return nil, fmt.Errorf("adding %s to %s: %w", p, real, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		dev.Close()
		return nil, fmt.Errorf("bringing %s up: %w", real, err)
	}
	return dev, nil
}
