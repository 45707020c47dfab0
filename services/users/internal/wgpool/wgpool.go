// Package wgpool allocates WireGuard tunnel addresses per server: one IPv4
// address (a /32) per user out of the server's pool, plus, when the pool
// has an IPv6 ULA prefix, the IPv6 address at the same host offset (a
// /128). No two users of a pool ever share an address.
//
// Allocation is deterministic: a user's preferred offset is a hash of the
// user id, and a taken offset moves on to the next free one, so the same
// assignments and the same request always give the same address, whichever
// replica of the registry computes it. The pool itself holds no state
// beyond its assignments, which the registry persists and loads back with
// Restore.
package wgpool

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// Field names the pool in errors about it.
const Field = "wireguard.address_pool"

// ErrFull is the condition of a pool with no free address (errors.Is).
var ErrFull = errors.New("wireguard address pool is full")

// Addr is one user's addresses in a pool.
type Addr struct {
	V4 netip.Addr
	// V6 is invalid when the pool has no IPv6 prefix.
	V6 netip.Addr
}

// Prefixes are a's addresses as the host prefixes a peer's allowed IPs and
// a `.conf`'s Address take.
func (a Addr) Prefixes() []netip.Prefix {
	out := []netip.Prefix{netip.PrefixFrom(a.V4, 32)}
	if a.V6.IsValid() {
		out = append(out, netip.PrefixFrom(a.V6, 128))
	}
	return out
}

// Pool is one server's address pool. It is not safe for concurrent use.
type Pool struct {
	v4, v6 netip.Prefix
	// size is how many offsets there are: 1 .. size-2 are hosts; offset 1
	// is the server's own address, so users get 2 .. size-2.
	size    uint32
	byAddr  map[uint32]string
	byOwner map[string]uint32
}

// New makes an empty pool over v4 (an IPv4 prefix from /8 to /30) and v6
// (an IPv6 ULA prefix in fc00::/7 with at least as many addresses, or the
// zero Prefix for none).
func New(v4, v6 netip.Prefix) (*Pool, error) {
	var fe []errs.FieldError
	if !v4.IsValid() || !v4.Addr().Is4() || v4.Bits() < 8 || v4.Bits() > 30 {
		fe = append(fe, errs.FieldError{Field: Field + ".ipv4", Rule: "must be an IPv4 prefix from /8 to /30"})
	} else if v4.Masked() != v4 {
		fe = append(fe, errs.FieldError{Field: Field + ".ipv4", Rule: "must be a network address (host bits zero)"})
	}
	if v6.IsValid() {
		ula := netip.MustParsePrefix("fc00::/7")
		switch {
		case !v6.Addr().Is6() || v6.Addr().Is4In6() || !ula.Contains(v6.Addr()):
			fe = append(fe, errs.FieldError{Field: Field + ".ipv6", Rule: "must be an IPv6 unique local prefix (fc00::/7)"})
		case v6.Masked() != v6:
			fe = append(fe, errs.FieldError{Field: Field + ".ipv6", Rule: "must be a network address (host bits zero)"})
		case v4.IsValid() && 128-v6.Bits() < 32-v4.Bits():
			fe = append(fe, errs.FieldError{Field: Field + ".ipv6", Rule: "must hold at least as many addresses as the IPv4 prefix"})
		}
	}
	if err := errs.Fields(fe...); err != nil {
		return nil, err
	}
	return &Pool{v4: v4, v6: v6, size: 1 << (32 - v4.Bits()), byAddr: map[uint32]string{}, byOwner: map[string]uint32{}}, nil
}

// Capacity is how many users the pool can hold.
func (p *Pool) Capacity() int { return int(p.size) - 3 }

// Len is how many users hold an address.
func (p *Pool) Len() int { return len(p.byOwner) }

// Server is the server's own address in the pool (the first host).
func (p *Pool) Server() Addr { return p.at(1) }

// Get returns owner's addresses, if it has some.
func (p *Pool) Get(owner string) (Addr, bool) {
	off, ok := p.byOwner[owner]
	if !ok {
		return Addr{}, false
	}
	return p.at(off), true
}

// Allocate returns owner's addresses, allocating them on first use. A full
// pool gives an errs.Conflict error wrapping ErrFull and naming Field.
func (p *Pool) Allocate(owner string) (Addr, error) {
	if a, ok := p.Get(owner); ok {
		return a, nil
	}
	if p.Len() >= p.Capacity() {
		return Addr{}, &errs.Error{Class: errs.Conflict, Msg: "allocating a wireguard address", Err: ErrFull,
			Fields: []errs.FieldError{{Field: Field, Rule: fmt.Sprintf("is full: all %d addresses of %s are allocated", p.Capacity(), p.v4)}}}
	}
	users := uint32(p.Capacity())
	h := fnv.New32a()
	_, _ = h.Write([]byte(owner))
	start := h.Sum32() % users
	for i := range users {
		off := 2 + (start+i)%users
		if _, taken := p.byAddr[off]; !taken {
			p.byAddr[off] = owner
			p.byOwner[owner] = off
			return p.at(off), nil
		}
	}
	panic("wgpool: no free offset in a pool that is not full")
}

// Release frees owner's addresses (nothing when it has none).
func (p *Pool) Release(owner string) {
	if off, ok := p.byOwner[owner]; ok {
		delete(p.byOwner, owner)
		delete(p.byAddr, off)
	}
}

// Restore records an assignment loaded from the registry. An address
// outside the pool, reserved, not matching the pool's IPv6 pairing, or
// held by another owner is refused (errs.Invalid or errs.Conflict).
func (p *Pool) Restore(owner string, a Addr) error {
	off, ok := p.offset(a.V4)
	if !ok || off < 2 || off > p.size-2 {
		return errs.Field(Field, fmt.Sprintf("%s of %s is not a user address of %s", a.V4, owner, p.v4))
	}
	if want := p.at(off).V6; want != a.V6 {
		return errs.Field(Field, fmt.Sprintf("%s of %s must pair with %v", a.V6, owner, want))
	}
	if cur, ok := p.byAddr[off]; ok && cur != owner {
		return &errs.Error{Class: errs.Conflict, Msg: "restoring a wireguard address",
			Fields: []errs.FieldError{{Field: Field, Rule: fmt.Sprintf("%s is held by %s, not %s", a.V4, cur, owner)}}}
	}
	if prev, ok := p.byOwner[owner]; ok && prev != off {
		delete(p.byAddr, prev)
	}
	p.byAddr[off] = owner
	p.byOwner[owner] = off
	return nil
}

// Assignments lists every owner's addresses.
func (p *Pool) Assignments() map[string]Addr {
	out := make(map[string]Addr, len(p.byOwner))
	for o, off := range p.byOwner {
		out[o] = p.at(off)
	}
	return out
}

func (p *Pool) at(off uint32) Addr {
	b := p.v4.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += off
	a := Addr{V4: netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})}
	if p.v6.IsValid() {
		base := p.v6.Addr().As16()
		x := new(big.Int).SetBytes(base[:])
		x.Add(x, big.NewInt(int64(off)))
		var out [16]byte
		x.FillBytes(out[:])
		a.V6 = netip.AddrFrom16(out)
	}
	return a
}

func (p *Pool) offset(a netip.Addr) (uint32, bool) {
	if !a.Is4() || !p.v4.Contains(a) {
		return 0, false
	}
	b, base := a.As4(), p.v4.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	m := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	return n - m, true
}
