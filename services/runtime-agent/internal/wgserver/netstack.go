package wgserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

const (
	nicID = 1
	// dialTimeout bounds dialing a destination for a tunnelled connection.
	dialTimeout = 10 * time.Second
	// udpIdle ends a UDP flow nobody used for this long.
	udpIdle = 2 * time.Minute
	// maxInFlight bounds TCP handshakes being forwarded at once.
	maxInFlight = 1024
	// batchSize is how many packets one Read may hand the device (and how
	// many the stack may queue for it), as wireguard-go batches them.
	batchSize = conn.IdealBatchSize
)

// netstackTUN is a tun.Device backed by a gVisor stack in promiscuous
// mode: every TCP connection and UDP flow the tunnel carries, to any
// address, is terminated in the stack and dialed out from the host. It is
// wireguard-go's tun/netstack with forwarders instead of local sockets.
type netstackTUN struct {
	ep       *channel.Endpoint
	stack    *stack.Stack
	events   chan tun.Event
	incoming chan *buffer.View
	mtu      int
	log      *slog.Logger
	allowAll bool
	alias    netip.Addr
	flows    flows
	// ctx ends forwarded connections when the device closes.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func newNetstack(ctx context.Context, mtu int, allowPrivate bool, alias netip.Addr, log *slog.Logger) (*netstackTUN, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &netstackTUN{
		ep:       channel.New(1024, uint32(mtu), ""),
		stack:    s,
		events:   make(chan tun.Event, 1),
		incoming: make(chan *buffer.View, batchSize),
		mtu:      mtu,
		log:      log,
		allowAll: allowPrivate,
		alias:    alias,
		ctx:      cctx,
		cancel:   cancel,
	}
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, fmt.Errorf("enabling tcp sack: %v", err)
	}
	t.ep.AddNotify(t)
	if err := s.CreateNIC(nicID, t.ep); err != nil {
		return nil, fmt.Errorf("creating the netstack nic: %v", err)
	}
	// Promiscuous: accept packets to any address; spoofing: answer from
	// any address (the destination the user asked for).
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return nil, fmt.Errorf("setting promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return nil, fmt.Errorf("setting spoofing: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	tcpFwd := tcp.NewForwarder(s, 0, maxInFlight, t.forwardTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tcpFwd.HandlePacket)
	udpFwd := udp.NewForwarder(s, t.forwardUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, udpFwd.HandlePacket)
	t.events <- tun.EventUp
	return t, nil
}

// target is where a tunnelled flow to dst is dialed, and whether it may
// be: the host alias goes to the host's loopback, private destinations
// only when allowed.
func (t *netstackTUN) target(dst netip.AddrPort) (netip.AddrPort, bool) {
	switch {
	case t.alias.IsValid() && dst.Addr() == t.alias:
		lo := netip.IPv6Loopback()
		if t.alias.Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		return netip.AddrPortFrom(lo, dst.Port()), true
	case t.allowAll || !isPrivate(dst.Addr()):
		return dst, true
	default:
		return netip.AddrPort{}, false
	}
}

func addrPort(a tcpip.Address, port uint16) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// forwardTCP dials the destination of a new tunnelled connection and, once
// it answers, completes the handshake and relays both ways. A refused or
// unreachable destination is answered with a reset, as the destination
// itself would.
func (t *netstackTUN) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	dst, ok := t.target(addrPort(id.LocalAddress, id.LocalPort))
	if !ok {
		r.Complete(true)
		return
	}
	ctx, cancel := context.WithTimeout(t.ctx, dialTimeout)
	var d net.Dialer
	out, err := d.DialContext(ctx, "tcp", dst.String())
	cancel()
	if err != nil {
		t.log.Debug("tunnelled connection not dialed", logkey.Target, dst.String(), logkey.Err, err)
		r.Complete(true)
		return
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		r.Complete(true)
		out.Close()
		return
	}
	r.Complete(false)
	ep.SocketOptions().SetKeepAlive(true)
	in := gonet.NewTCPConn(&wq, ep)
	forget := t.flows.add(addrPort(id.RemoteAddress, 0).Addr(), func() { in.Close(); out.Close() })
	defer forget()
	relayTCP(t.ctx, in, out.(*net.TCPConn))
}

// relayTCP copies both ways, passing half-closes on, until both
// directions end or ctx does.
func relayTCP(ctx context.Context, in *gonet.TCPConn, out *net.TCPConn) {
	stop := context.AfterFunc(ctx, func() { in.Close(); out.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(out, in)
		_ = out.CloseWrite()
	}()
	_, _ = io.Copy(in, out)
	_ = in.CloseWrite()
	wg.Wait()
	in.Close()
	out.Close()
}

// forwardUDP relays one UDP flow (one source and destination pair) through
// a host socket connected to the destination, until it idles.
func (t *netstackTUN) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	dst, ok := t.target(addrPort(id.LocalAddress, id.LocalPort))
	if !ok {
		return true // dropped
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		return true
	}
	in := gonet.NewUDPConn(&wq, ep)
	go func() {
		defer in.Close()
		out, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			t.log.Debug("tunnelled udp flow not dialed", logkey.Target, dst.String(), logkey.Err, err)
			return
		}
		defer out.Close()
		forget := t.flows.add(addrPort(id.RemoteAddress, 0).Addr(), func() { in.Close(); out.Close() })
		defer forget()
		stop := context.AfterFunc(t.ctx, func() { in.Close(); out.Close() })
		defer stop()
		done := make(chan struct{})
		go func() {
			defer close(done)
			copyDatagrams(in, out)
		}()
		copyDatagrams(out, in)
		in.Close()
		out.Close()
		<-done
	}()
	return true
}

// copyDatagrams copies datagrams from src to dst until src idles for
// udpIdle or either fails.
func copyDatagrams(dst, src net.Conn) {
	buf := make([]byte, 64*1024)
	for {
		_ = src.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// closeUnrouted ends the flows whose source is no longer in any peer's
// allowed IPs (its peer was removed or cut), returning how many.
func (t *netstackTUN) closeUnrouted(routed []netip.Prefix) int {
	hosts := make(map[netip.Addr]bool, len(routed))
	var nets []netip.Prefix
	for _, p := range routed {
		if p.IsSingleIP() {
			hosts[p.Addr()] = true
		} else {
			nets = append(nets, p)
		}
	}
	var gone []netip.Addr
	for _, src := range t.flows.sources() {
		if hosts[src] || slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(src) }) {
			continue
		}
		gone = append(gone, src)
	}
	return t.flows.closeFrom(gone)
}

// The tun.Device methods, as in wireguard-go's tun/netstack.

func (t *netstackTUN) Name() (string, error)    { return "netstack", nil }
func (t *netstackTUN) File() *os.File           { return nil }
func (t *netstackTUN) Events() <-chan tun.Event { return t.events }
func (t *netstackTUN) MTU() (int, error)        { return t.mtu, nil }
func (t *netstackTUN) BatchSize() int           { return batchSize }

// Read hands wireguard-go the packets the stack sent: it waits for one,
// then takes those already queued, up to len(bufs), so that the device
// encrypts and sends them as one batch (one sendmmsg) instead of one
// system call each.
func (t *netstackTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var view *buffer.View
	select {
	case view = <-t.incoming:
	case <-t.ctx.Done():
		return 0, os.ErrClosed
	}
	n := 0
	for {
		k, err := view.Read(bufs[n][offset:])
		view.Release()
		if err != nil {
			return n, err
		}
		sizes[n] = k
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case view = <-t.incoming:
		default:
			return n, nil
		}
	}
}

// Write injects decrypted packets into the stack.
func (t *netstackTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		packet := b[offset:]
		if len(packet) == 0 {
			continue
		}
		pkb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(packet)})
		switch packet[0] >> 4 {
		case 4:
			t.ep.InjectInbound(header.IPv4ProtocolNumber, pkb)
		case 6:
			t.ep.InjectInbound(header.IPv6ProtocolNumber, pkb)
		default:
			pkb.DecRef()
			return 0, syscall.EAFNOSUPPORT
		}
		pkb.DecRef()
	}
	return len(bufs), nil
}

// WriteNotify is called by the channel endpoint when the stack sent a
// packet.
func (t *netstackTUN) WriteNotify() {
	pkt := t.ep.Read()
	if pkt == nil {
		return
	}
	view := pkt.ToView()
	pkt.DecRef()
	select {
	case t.incoming <- view:
	case <-t.ctx.Done():
		view.Release()
	}
}

func (t *netstackTUN) Close() error {
	t.once.Do(func() {
		t.cancel()
		t.stack.RemoveNIC(nicID)
		t.stack.Close()
		t.ep.Close()
		close(t.events)
	})
	return nil
}
