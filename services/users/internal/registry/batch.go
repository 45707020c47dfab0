package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/subject"
)

// JetStream atomic batch publish (ADR-50): every message of a batch
// carries Nats-Batch-Id and Nats-Batch-Sequence, the last one also
// Nats-Batch-Commit. The server stages the batch and, on the commit, checks
// every message's expectations and stores all of them or none, with one
// sync to disk for the whole batch: that is what makes a bulk job faster
// than one fsync per write while every acknowledged batch stays durable.
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
	hdrExpectSeq   = "Nats-Expected-Last-Subject-Sequence"
	hdrKVOperation = "KV-Operation"
)

// MaxBatch is the most messages one atomic batch holds (the server's
// default limit).
const MaxBatch = 1000

// errAtomicDisabled: the stream does not allow atomic batches.
const errCodeAtomicDisabled = 10174

// ErrBatchRefused is wrapped by a batch the server refused as a whole (an
// expectation failed, a duplicate message id, atomic publish disabled):
// nothing of it was stored.
var ErrBatchRefused = errors.New("atomic batch refused")

type batchAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Count  int    `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// atomicPublish stores msgs (all on one stream, at most MaxBatch) as one
// atomic batch and returns the stream sequence of the first one; the
// others follow it contiguously (a committed batch is stored in order, not
// interleaved with other writes). Staged messages are sent without a reply
// subject; only the commit is acknowledged.
func (r *Registry) atomicPublish(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if len(msgs) > MaxBatch {
		return 0, errs.New(errs.Internal, "atomic batch of %d messages exceeds %d", len(msgs), MaxBatch)
	}
	nc := r.js.Conn()
	id := nuid.Next()
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(m); err != nil {
				return 0, unavailable(err, "staging batch message %d", i+1)
			}
		}
	}
	last := msgs[len(msgs)-1]
	last.Header.Set(hdrBatchCommit, "1")
	reply, err := nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return 0, unavailable(err, "committing batch to %s", last.Subject)
	}
	var ack batchAck
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return 0, unavailable(err, "decoding batch acknowledgement")
	}
	if ack.Error != nil {
		if ack.Error.ErrCode == errCodeAtomicDisabled {
			r.atomicOff.Store(true)
		}
		return 0, fmt.Errorf("%w: %s (%d)", ErrBatchRefused, ack.Error.Description, ack.Error.ErrCode)
	}
	if ack.Count != len(msgs) {
		return 0, errs.New(errs.Internal, "batch to %s stored %d of %d messages", ack.Stream, ack.Count, len(msgs))
	}
	return ack.Seq - uint64(len(msgs)) + 1, nil
}

// EnableAtomic turns on AllowAtomicPublish on the streams bulk jobs write
// (subject.AtomicStreams). Provisioning does not declare it, so a service
// start elsewhere may turn it off again; the registry then notices the
// refusal, applies the batch item by item and enables it once more.
func (r *Registry) EnableAtomic(ctx context.Context) error {
	for _, name := range subject.AtomicStreams {
		st, err := r.js.Stream(ctx, name)
		if err != nil {
			return unavailable(err, "opening stream %s", name)
		}
		cfg := st.CachedInfo().Config
		if cfg.AllowAtomicPublish {
			continue
		}
		cfg.AllowAtomicPublish = true
		if _, err := r.js.UpdateStream(ctx, cfg); err != nil {
			return unavailable(err, "allowing atomic batches on %s", name)
		}
		r.log.Info("allowed atomic batches", logkey.Stream, name)
	}
	r.atomicOff.Store(false)
	return nil
}

// reenable restores atomic publishing after a refusal said it was off.
func (r *Registry) reenable(ctx context.Context) {
	if !r.atomicOff.Load() {
		return
	}
	if err := r.EnableAtomic(ctx); err != nil {
		r.log.Warn("allowing atomic batches", logkey.Err, err)
	}
}

// kvMsg is a write of value to key in bucket, expecting the key's last
// revision to be expect (0: the key was never written or was purged).
func kvMsg(bucket, key string, value []byte, expect uint64) *nats.Msg {
	m := nats.NewMsg(kvSubject(bucket, key))
	m.Data = value
	m.Header.Set(hdrExpectSeq, strconv.FormatUint(expect, 10))
	return m
}

// kvDelMsg is a delete marker for key, expecting revision expect; expect 0
// deletes whatever is there.
func kvDelMsg(bucket, key string, expect uint64) *nats.Msg {
	m := nats.NewMsg(kvSubject(bucket, key))
	m.Header.Set(hdrKVOperation, "DEL")
	if expect != 0 {
		m.Header.Set(hdrExpectSeq, strconv.FormatUint(expect, 10))
	}
	return m
}

// inBatches calls fn with consecutive slices of at most MaxBatch indexes
// of n items.
func inBatches(n int, fn func(lo, hi int)) {
	for lo := 0; lo < n; lo += MaxBatch {
		fn(lo, min(lo+MaxBatch, n))
	}
}
