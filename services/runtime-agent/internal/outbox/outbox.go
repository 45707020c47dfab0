// Package outbox makes the agent's publishes survive NATS being
// unreachable and the agent being killed: every message is first written to
// a file under the data dir, then published to JetStream in order, with a
// deterministic Nats-Msg-Id, and deleted only once the server acknowledged
// it. While NATS is cut off the queue grows (bounded) and the publisher
// backs off; when NATS is back the queue drains, and a message that was in
// flight when the link dropped is deduplicated by its id.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/atomicfile"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
)

// Msg is one message waiting to be published.
type Msg struct {
	Subject string              `json:"subject"`
	MsgID   string              `json:"msg_id"`
	Header  map[string][]string `json:"header,omitempty"`
	Data    []byte              `json:"data"`
}

type entry struct {
	seq uint64
	msg Msg
}

// Outbox is a durable, bounded, ordered queue of messages to publish.
type Outbox struct {
	dir string
	max int
	log *slog.Logger

	mu      sync.Mutex
	queue   []entry
	next    uint64
	dropped uint64
	wake    chan struct{}
}

// Open loads (or creates) the outbox in dir. limit bounds the queue: when it
// is full (limit messages) the oldest message is dropped and counted, so a months-long
// outage cannot fill the disk.
func Open(dir string, limit int, log *slog.Logger) (*Outbox, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("outbox limit must be positive, got %d", limit)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating outbox dir: %w", err)
	}
	o := &Outbox{dir: dir, max: limit, log: log, next: 1, wake: make(chan struct{}, 1)}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading outbox dir: %w", err)
	}
	for _, n := range names {
		name := n.Name()
		if strings.HasPrefix(name, atomicfile.TempPrefix) {
			_ = os.Remove(filepath.Join(dir, name)) // a write that never finished
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".json"), 10, 64)
		if err != nil || !strings.HasSuffix(name, ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("reading outbox entry %s: %w", name, err)
		}
		var m Msg
		if err := json.Unmarshal(data, &m); err != nil {
			log.Warn("dropping unreadable outbox entry", logkey.Path, name, logkey.Err, err)
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		o.queue = append(o.queue, entry{seq: seq, msg: m})
		o.next = max(o.next, seq+1)
	}
	sort.Slice(o.queue, func(i, j int) bool { return o.queue[i].seq < o.queue[j].seq })
	return o, nil
}

// Add persists m and queues it for publishing. It returns once m is on disk.
func (o *Outbox) Add(m Msg) error {
	if m.Subject == "" || m.MsgID == "" {
		return errors.New("outbox: message needs a subject and an id")
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding outbox message %s: %w", m.MsgID, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	seq := o.next
	o.next++
	if err := atomicfile.Write(o.path(seq), data, 0o600, true); err != nil {
		return fmt.Errorf("writing outbox entry %d: %w", seq, err)
	}
	o.queue = append(o.queue, entry{seq: seq, msg: m})
	for len(o.queue) > o.max {
		o.dropped++
		_ = os.Remove(o.path(o.queue[0].seq))
		if o.dropped == 1 || o.dropped%1000 == 0 {
			o.log.Warn("outbox full, dropping oldest", logkey.Count, o.dropped)
		}
		o.queue = o.queue[1:]
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Len is the number of messages waiting.
func (o *Outbox) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// Dropped counts messages dropped because the outbox was full.
func (o *Outbox) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}

// Run publishes queued messages in order until ctx ends, backing off
// exponentially (capped at 5s) while publishing fails.
func (o *Outbox) Run(ctx context.Context, js jetstream.JetStream) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.MaxElapsedTime = 0
	for {
		e, ok := o.peek()
		if !ok {
			select {
			case <-o.wake:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		err := o.publish(ctx, js, e.msg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			wait := bo.NextBackOff()
			o.log.Debug("publishing buffered message", logkey.MsgID, e.msg.MsgID, logkey.Err, err, logkey.Delay, wait)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		bo.Reset()
		o.done(e.seq)
	}
}

func (o *Outbox) publish(ctx context.Context, js jetstream.JetStream, m Msg) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nm := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header(m.Header)}
	_, err := js.PublishMsg(pctx, nm, jetstream.WithMsgID(m.MsgID))
	return err
}

func (o *Outbox) peek() (entry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		return entry{}, false
	}
	return o.queue[0], true
}

// done removes the published message, unless Add dropped it meanwhile.
func (o *Outbox) done(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) > 0 && o.queue[0].seq == seq {
		o.queue = o.queue[1:]
	}
	if err := os.Remove(o.path(seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		o.log.Warn("removing published outbox entry", logkey.Seq, seq, logkey.Err, err)
	}
}

func (o *Outbox) path(seq uint64) string {
	return filepath.Join(o.dir, fmt.Sprintf("%020d.json", seq))
}
