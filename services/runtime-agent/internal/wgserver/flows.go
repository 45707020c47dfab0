package wgserver

import (
	"net/netip"
	"sync"
)

// flows tracks the netstack's forwarded connections by the tunnel address
// they come from, so that those of a removed peer end with it instead of
// holding host sockets until they time out.
type flows struct {
	mu    sync.Mutex
	bySrc map[netip.Addr]map[*flow]struct{}
}

type flow struct{ close func() }

// add tracks close for a flow from src; the returned func forgets it.
func (f *flows) add(src netip.Addr, close func()) (forget func()) {
	fl := &flow{close: close}
	f.mu.Lock()
	if f.bySrc == nil {
		f.bySrc = map[netip.Addr]map[*flow]struct{}{}
	}
	if f.bySrc[src] == nil {
		f.bySrc[src] = map[*flow]struct{}{}
	}
	f.bySrc[src][fl] = struct{}{}
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		delete(f.bySrc[src], fl)
		if len(f.bySrc[src]) == 0 {
			delete(f.bySrc, src)
		}
		f.mu.Unlock()
	}
}

// sources lists the addresses with open flows.
func (f *flows) sources() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]netip.Addr, 0, len(f.bySrc))
	for a := range f.bySrc {
		out = append(out, a)
	}
	return out
}

// closeFrom ends every flow from the addresses given, returning how many.
func (f *flows) closeFrom(srcs []netip.Addr) int {
	var doomed []*flow
	f.mu.Lock()
	for _, a := range srcs {
		for fl := range f.bySrc[a] {
			doomed = append(doomed, fl)
		}
	}
	f.mu.Unlock()
	for _, fl := range doomed {
		fl.close()
	}
	return len(doomed)
}
