package wgserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/wireguard"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// maxSetRequest bounds one `set=1` request (wireguard.BatchSize peers
// take about 150 KiB).
const maxSetRequest = 64 << 20

// serveUAPI answers UAPI requests on conn as wireguard-go's
// Device.IpcHandle does, and after a `set=1` that may have taken allowed
// IPs away (a removal, a replacement) ends the netstack flows of the
// addresses no peer holds any more: a removed peer's open connections end
// with it. ns is nil in TUN mode.
func serveUAPI(dev *device.Device, ns *netstackTUN, conn net.Conn, log *slog.Logger) {
	defer conn.Close()
	r, w := bufio.NewReader(conn), bufio.NewWriter(conn)
	for {
		op, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch op {
		case "set=1\n":
			var body []byte
			body, err = readSet(r)
			if err != nil {
				return
			}
			err = dev.IpcSetOperation(bytes.NewReader(body))
			if err == nil && ns != nil && mayUnroute(body) {
				sweep(dev, ns, log)
			}
		case "get=1\n":
			b, rerr := r.ReadByte()
			if rerr != nil || b != '\n' {
				return
			}
			err = dev.IpcGetOperation(w)
		default:
			return
		}
		code := int64(0)
		if err != nil {
			var status *device.IPCError
			if errors.As(err, &status) {
				code = status.ErrorCode()
			} else {
				code = ipc.IpcErrorUnknown
			}
		}
		fmt.Fprintf(w, "errno=%d\n\n", code)
		if w.Flush() != nil {
			return
		}
	}
}

// readSet reads a `set=1` body up to and including its blank line.
func readSet(r *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		body = append(body, line...)
		if line == "\n" {
			return body, nil
		}
		if len(body) > maxSetRequest {
			return nil, errors.New("set request too large")
		}
	}
}

// mayUnroute tells whether a `set=1` body may have taken an address away
// from a peer that had it: a removal, a replacement of every peer, or a
// change of existing peers only (update_only, as wireguard.RemovePeers
// cuts a peer). Adding peers, the common bulk change, does not sweep.
func mayUnroute(body []byte) bool {
	return bytes.Contains(body, []byte("remove=true")) || bytes.Contains(body, []byte("replace_peers=true")) ||
		bytes.Contains(body, []byte("update_only=true"))
}

// sweep ends the netstack flows whose source no peer routes any more.
func sweep(dev *device.Device, ns *netstackTUN, log *slog.Logger) {
	if len(ns.flows.sources()) == 0 {
		return
	}
	text, err := dev.IpcGet()
	if err != nil {
		log.Warn("reading allowed ips after a change", logkey.Err, err)
		return
	}
	d, err := wireguard.ParseGet(strings.NewReader(text + "errno=0\n"))
	if err != nil {
		log.Warn("reading allowed ips after a change", logkey.Err, err)
		return
	}
	var routed []netip.Prefix
	for _, p := range d.Peers {
		routed = append(routed, p.AllowedIPs...)
	}
	if n := ns.closeUnrouted(routed); n > 0 {
		log.Info("flows of removed peers ended", logkey.Count, n)
	}
}
