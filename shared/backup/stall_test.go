package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// stallingWriter stalls, once it has written the start of stream's
// section, until that stream's snapshot has been received to its end: a
// slow HTTP client or disk. Receiving must not wait for it, or the server
// (which abandons a snapshot whose acknowledgements stall for seconds)
// cuts the backup short.
type stallingWriter struct {
	ctx     context.Context
	marker  []byte
	drained <-chan struct{}
	buf     bytes.Buffer
	stalled bool
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if !w.stalled && bytes.Contains(w.buf.Bytes(), w.marker) {
		w.stalled = true
		select {
		case <-w.drained:
		case <-w.ctx.Done():
			return 0, w.ctx.Err()
		}
	}
	return w.buf.Write(p)
}

func TestStalledWriterKeepsTheSnapshot(t *testing.T) {
	src := natstest.Start(t)
	nc := src.Conn()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	populate(t, js, 10)
	// Values that do not compress, so that the users stream's snapshot
	// is many chunks.
	users, err := js.KeyValue(ctxT(t), subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10 + 4000
	for i := 10; i < n; i++ {
		v := make([]byte, 256)
		_, _ = rand.Read(v)
		if _, err := users.Put(ctxT(t), fmt.Sprintf("u%05d", i), []byte(hex.EncodeToString(v))); err != nil {
			t.Fatal(err)
		}
	}

	stream := "KV_" + subject.BucketUsers
	drained := make(chan struct{})
	var once sync.Once
	snapshotDrained = func(s string) {
		if s == stream {
			once.Do(func() { close(drained) })
		}
	}
	t.Cleanup(func() { snapshotDrained = func(string) {} })

	ctx := ctxT(t)
	w := &stallingWriter{ctx: ctx, marker: []byte(`"name":"` + stream + `"`), drained: drained}
	if _, err := Create(ctx, nc, w, Options{}); err != nil {
		t.Fatalf("creating a backup through a writer that stalls: %v", err)
	}
	if !w.stalled {
		t.Fatalf("the writer never saw the section of %s", stream)
	}
	m, err := Verify(opener(w.buf.Bytes()), "")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, _ := m.Messages(stream); got != n {
		t.Fatalf("manifest counts %d users, want %d", got, n)
	}
}
