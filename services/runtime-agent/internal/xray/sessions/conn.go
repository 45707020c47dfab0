package sessions

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtls/xray-core/common"
	"github.com/xtls/xray-core/common/buf"
	"github.com/xtls/xray-core/common/net"
	"github.com/xtls/xray-core/features/stats"
)

// errCut is what a cut session's reads and writes return.
var errCut = errors.New("session cut: the user is no longer allowed here")

// handoffGrace bounds how long a cut waits for bytes already on their way
// to the client (one buffer being written) before it closes the
// connection anyway. A client that stops reading would otherwise hold the
// cut forever.
const handoffGrace = 500 * time.Millisecond

// conn is one tracked connection (or, for connections that carry several
// streams, one stream of it).
type conn struct {
	user   string
	client net.Conn // the connection Xray accepted; nil if unknown
	down   stats.Counter

	isCut atomic.Bool
	// handoff is held (a value in it) while bytes the destination sent
	// are on their way to the client: a cut waits for it so that what was
	// counted was delivered, and what was not delivered is not counted. A
	// channel, not a mutex, so that a cut can give up waiting without
	// leaving anything behind.
	handoff chan struct{}

	mu         sync.Mutex
	interrupts []func()
}

func (c *conn) addInterrupt(f func()) {
	c.mu.Lock()
	c.interrupts = append(c.interrupts, f)
	c.mu.Unlock()
}

// cut ends the connection; false if it was already cut.
func (c *conn) cut() bool {
	if !c.isCut.CompareAndSwap(false, true) {
		return false
	}
	wait := time.NewTimer(handoffGrace)
	select {
	case c.handoff <- struct{}{}:
		// Nothing is on its way to the client any more.
		<-c.handoff
	case <-wait.C:
	}
	wait.Stop()
	c.mu.Lock()
	interrupts := c.interrupts
	c.mu.Unlock()
	for _, f := range interrupts {
		f()
	}
	if c.client != nil {
		_ = c.client.Close()
	}
	return true
}

func (c *conn) count(n int64) {
	if c.down != nil && n > 0 {
		c.down.Add(n)
	}
}

// downWriter writes the destination's bytes to the client and counts
// those written.
type downWriter struct {
	c *conn
	w buf.Writer
}

func (d *downWriter) WriteMultiBuffer(mb buf.MultiBuffer) error {
	d.c.handoff <- struct{}{}
	defer func() { <-d.c.handoff }()
	if d.c.isCut.Load() {
		buf.ReleaseMulti(mb)
		return errCut
	}
	n := int64(mb.Len())
	if err := d.w.WriteMultiBuffer(mb); err != nil {
		return err
	}
	d.c.count(n)
	return nil
}

func (d *downWriter) Close() error { return common.Close(d.w) }

func (d *downWriter) Interrupt() { common.Interrupt(d.w) }

// downReader hands the destination's bytes to an inbound that writes them
// to the client. The inbound reads again only after it wrote what it read
// before, so a batch is counted at the next read: bytes the inbound read
// but never wrote (the connection failed meanwhile) are not counted.
type downReader struct {
	c       *conn
	r       buf.Reader
	pending int64
	holding bool
}

func (d *downReader) settle() {
	d.c.count(d.pending)
	d.pending = 0
	if d.holding {
		d.holding = false
		<-d.c.handoff
	}
}

func (d *downReader) take(mb buf.MultiBuffer, err error) (buf.MultiBuffer, error) {
	if d.c.isCut.Load() {
		buf.ReleaseMulti(mb)
		return nil, errCut
	}
	if mb.IsEmpty() {
		return nil, err
	}
	d.c.handoff <- struct{}{}
	// A cut that came while this read was blocked waits for handoff: look
	// again now that it is held, so nothing is handed on after a cut.
	if d.c.isCut.Load() {
		<-d.c.handoff
		buf.ReleaseMulti(mb)
		return nil, errCut
	}
	d.holding = true
	d.pending = int64(mb.Len())
	return mb, err
}

func (d *downReader) ReadMultiBuffer() (buf.MultiBuffer, error) {
	d.settle()
	if d.c.isCut.Load() {
		return nil, errCut
	}
	return d.take(d.r.ReadMultiBuffer())
}

// ReadMultiBufferTimeout implements buf.TimeoutReader when the reader it
// wraps does (Xray's pipes do).
func (d *downReader) ReadMultiBufferTimeout(timeout time.Duration) (buf.MultiBuffer, error) {
	d.settle()
	if d.c.isCut.Load() {
		return nil, errCut
	}
	tr, ok := d.r.(buf.TimeoutReader)
	if !ok {
		return d.take(d.r.ReadMultiBuffer())
	}
	return d.take(tr.ReadMultiBufferTimeout(timeout))
}

func (d *downReader) Interrupt() { common.Interrupt(d.r) }

func (d *downReader) Close() error { return common.Close(d.r) }
