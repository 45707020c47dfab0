package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

// JetStream API subjects of stream snapshots and restores, and of the
// stream lookups around them.
const (
	apiSnapshot = "$JS.API.STREAM.SNAPSHOT."
	apiRestore  = "$JS.API.STREAM.RESTORE."
	apiInfo     = "$JS.API.STREAM.INFO."
	apiDelete   = "$JS.API.STREAM.DELETE."
)

// chunkSize is the snapshot chunk asked for: well below the 1 MiB
// max_payload a NATS cluster may have.
const chunkSize = 128 << 10

// Required lists the streams every backup holds, in the order they are
// snapshotted: every stream and bucket (as KV_<bucket>) declared in
// shared/subject. Records that point at others are taken before what they
// point at (a job record before its items, a user before its name claim),
// so that a backup taken while the product runs never holds a reference
// to something missing; a name claim without its user is taken over by
// the registry after a grace period.
func Required() []string {
	first := []string{"KV_" + subject.BucketJobs, "KV_" + subject.BucketServers, "KV_" + subject.BucketUsers,
		"KV_" + subject.BucketSubTokens, "KV_" + subject.BucketUserNames}
	out := slices.Clone(first)
	add := func(name string) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, b := range subject.Buckets(1) {
		add("KV_" + b.Bucket)
	}
	for _, s := range subject.Streams(1) {
		add(s.Name)
	}
	return out
}

// Options says what Create writes.
type Options struct {
	// Streams are snapshotted in this order; nil means Required().
	Streams []string
	// TrustDir, when set, is the embedded server's NATS trust directory
	// (<data-dir>/nats): its files go into the backup, so that a restore
	// into a fresh data dir keeps the operator, the accounts (with their
	// revocations) and the TLS CA that agents on other hosts trust.
	TrustDir string
	// Passphrase, when set, encrypts the file (age, scrypt).
	Passphrase string
	// WorkFactor is scrypt's log2 work factor (DefaultWorkFactor if 0).
	WorkFactor int
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Create writes a backup of every stream to w over nc, a connection with
// the service credential (it may use the JetStream API of the account).
// Each stream is snapshotted by the server at one instant, with its
// consumers and their state.
func Create(ctx context.Context, nc *nats.Conn, w io.Writer, opts Options) (Manifest, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	streams := opts.Streams
	if streams == nil {
		streams = Required()
	}
	var out io.Writer = w
	var enc io.WriteCloser
	if opts.Passphrase != "" {
		var err error
		if enc, err = Encrypt(w, opts.Passphrase, opts.WorkFactor); err != nil {
			return Manifest{}, err
		}
		out = enc
	}
	fw, err := newWriter(out)
	if err != nil {
		return Manifest{}, err
	}
	m := Manifest{Format: FormatVersion, ProductVersion: version.Version, CreatedAt: now().UTC().Truncate(time.Millisecond)}
	if err := fw.json(frameHeader, Header{Format: m.Format, ProductVersion: m.ProductVersion, CreatedAt: m.CreatedAt}); err != nil {
		return Manifest{}, err
	}
	for _, name := range streams {
		entry, err := snapshotInto(ctx, nc, fw, name)
		if err != nil {
			return Manifest{}, err
		}
		m.Streams = append(m.Streams, entry)
	}
	if opts.TrustDir != "" {
		if m.Files, err = trustInto(fw, opts.TrustDir); err != nil {
			return Manifest{}, err
		}
	}
	if err := fw.finish(m); err != nil {
		return Manifest{}, err
	}
	if enc != nil {
		if err := enc.Close(); err != nil {
			return Manifest{}, fmt.Errorf("finishing encrypted backup: %w", err)
		}
	}
	return m, nil
}

// apiError is the error of a JetStream API response.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// errStreamNotFound is JetStream's error code for a stream that does not
// exist.
const errStreamNotFound = 10059

func (e *apiError) err(what string) error {
	if e == nil {
		return nil
	}
	c := errs.Unavailable
	switch e.Code {
	case 400:
		c = errs.Invalid
	case 404:
		c = errs.NotFound
	case 403:
		c = errs.Forbidden
	}
	return errs.New(c, "%s: %s (jetstream error %d)", what, e.Description, e.ErrCode)
}

type streamState struct {
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumer_count"`
}

// snapshotInto takes one stream's snapshot and writes it as a section.
func snapshotInto(ctx context.Context, nc *nats.Conn, fw *writer, name string) (Stream, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return Stream{}, fmt.Errorf("snapshot of %s: subscribing: %w", name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, 64<<20)
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "chunk_size": chunkSize})
	msg, err := nc.RequestWithContext(ctx, apiSnapshot+name, req)
	if err != nil {
		return Stream{}, errs.Wrap(errs.Unavailable, err, "asking for a snapshot of stream %s", name)
	}
	var resp struct {
		Error  *apiError       `json:"error"`
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return Stream{}, fmt.Errorf("snapshot of %s: decoding the reply: %w", name, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == errStreamNotFound {
			return Stream{}, errs.WithCode(errs.New(errs.Unavailable, "stream %s does not exist: start the services once so they provision it, then back up", name), CodeMissingStream)
		}
		return Stream{}, resp.Error.err("snapshot of stream " + name)
	}
	var st streamState
	_ = json.Unmarshal(resp.State, &st)
	rctx, stop := context.WithCancel(ctx)
	c := receive(rctx, sub, name)
	size, sum, err := fw.section(KindStream, name, c)
	stop()
	<-c.ended
	if err != nil {
		return Stream{}, err
	}
	return Stream{Name: name, Messages: st.Messages, Bytes: st.Bytes, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq,
		Consumers: st.Consumers, Size: size, SHA256: sum, Config: resp.Config, State: resp.State}, nil
}

// chunks is one stream's snapshot as a reader. A goroutine receives the
// chunks from the deliver subscription and acknowledges each (the
// server's flow control) as soon as it is buffered, not when the backup's
// writer has taken it: the server abandons a snapshot whose acknowledgements
// stall for a few seconds, and a writer may stall that long (an HTTP client
// on a slow link, a slow disk). Up to bufferedChunks chunks wait for the
// writer; past that the goroutine stops acknowledging, so memory stays
// bounded and only a writer stalled that far loses the snapshot.
type chunks struct {
	name  string
	data  chan []byte   // received chunks; closed after the last one
	err   error         // why receiving stopped early; read after data is closed
	ended chan struct{} // closed when the goroutine has returned
	rest  []byte
}

// chunkTimeout bounds the wait for the next chunk: the server gives up on
// an unacknowledged window after 5 s, so longer means it is gone.
const chunkTimeout = 30 * time.Second

// bufferedChunks is how many chunks (of chunkSize) may wait for a slow
// writer: 64 MiB.
const bufferedChunks = 512

// snapshotDrained is called when a stream's snapshot has been received to
// its end; tests use it to see that receiving does not wait for the writer.
var snapshotDrained = func(stream string) {}

// receive starts receiving a snapshot on sub until its end, an error, or
// ctx ends.
func receive(ctx context.Context, sub *nats.Subscription, name string) *chunks {
	c := &chunks{name: name, data: make(chan []byte, bufferedChunks), ended: make(chan struct{})}
	go func() {
		defer close(c.ended)
		defer close(c.data)
		c.err = c.run(ctx, sub)
	}()
	return c
}

func (c *chunks) run(ctx context.Context, sub *nats.Subscription) error {
	for {
		mctx, cancel := context.WithTimeout(ctx, chunkTimeout)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			return errs.Wrap(errs.Unavailable, err, "snapshot of stream %s: waiting for the next chunk", c.name)
		}
		if status := m.Header.Get("Status"); status != "" && status != "204" {
			return errs.New(errs.Unavailable, "snapshot of stream %s failed on the server: %s %s", c.name, status, m.Header.Get("Description"))
		}
		if len(m.Data) == 0 {
			snapshotDrained(c.name)
			return nil
		}
		select {
		case c.data <- m.Data:
		case <-ctx.Done():
			return ctx.Err()
		}
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return fmt.Errorf("snapshot of stream %s: acknowledging a chunk: %w", c.name, err)
			}
		}
	}
}

func (c *chunks) Read(p []byte) (int, error) {
	for len(c.rest) == 0 {
		d, ok := <-c.data
		if !ok {
			<-c.ended
			if c.err != nil {
				return 0, c.err
			}
			return 0, io.EOF
		}
		c.rest = d
	}
	n := copy(p, c.rest)
	c.rest = c.rest[n:]
	return n, nil
}

// trustInto writes every regular file under dir as a section.
func trustInto(fw *writer, dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !validFilePath(rel) || strings.HasPrefix(filepath.Base(rel), ".") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		size, sum, err := fw.section(KindFile, rel, f)
		if err != nil {
			return err
		}
		files = append(files, File{Path: rel, Mode: uint32(info.Mode().Perm()), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backing up the nats trust in %s: %w", dir, err)
	}
	return files, nil
}

// streamInfo returns a stream's state; ok is false when it does not
// exist.
func streamInfo(ctx context.Context, nc *nats.Conn, name string) (streamState, bool, error) {
	msg, err := nc.RequestWithContext(ctx, apiInfo+name, nil)
	if err != nil {
		return streamState{}, false, errs.Wrap(errs.Unavailable, err, "reading stream %s", name)
	}
	var resp struct {
		Error *apiError   `json:"error"`
		State streamState `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return streamState{}, false, fmt.Errorf("reading stream %s: %w", name, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == errStreamNotFound {
			return streamState{}, false, nil
		}
		return streamState{}, false, resp.Error.err("reading stream " + name)
	}
	return resp.State, true, nil
}

func deleteStream(ctx context.Context, nc *nats.Conn, name string) error {
	msg, err := nc.RequestWithContext(ctx, apiDelete+name, nil)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "deleting stream %s", name)
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("deleting stream %s: %w", name, err)
	}
	return resp.Error.err("deleting stream " + name)
}

// restoreStream sends one snapshot to the server, which creates the
// stream from it (it must not exist).
func restoreStream(ctx context.Context, nc *nats.Conn, s Stream, replicas int, data io.Reader) error {
	cfg := s.Config
	if replicas > 0 {
		var c map[string]any
		if err := json.Unmarshal(cfg, &c); err != nil {
			return fmt.Errorf("restoring stream %s: its config: %w", s.Name, err)
		}
		c["num_replicas"] = replicas
		cfg, _ = json.Marshal(c)
	}
	req, _ := json.Marshal(map[string]json.RawMessage{"config": cfg, "state": s.State})
	msg, err := nc.RequestWithContext(ctx, apiRestore+s.Name, req)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "starting the restore of stream %s", s.Name)
	}
	var resp struct {
		Error          *apiError `json:"error"`
		DeliverSubject string    `json:"deliver_subject"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("restoring stream %s: %w", s.Name, err)
	}
	if resp.Error != nil {
		return resp.Error.err("restoring stream " + s.Name)
	}
	buf := make([]byte, chunkSize)
	for {
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			if _, err := nc.RequestWithContext(ctx, resp.DeliverSubject, buf[:n]); err != nil {
				return errs.Wrap(errs.Unavailable, err, "restoring stream %s: sending a chunk", s.Name)
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// An empty message ends the upload; the reply is the new stream.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	msg, err = nc.RequestWithContext(ctx, resp.DeliverSubject, nil)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "restoring stream %s: finishing", s.Name)
	}
	var done struct {
		Error *apiError   `json:"error"`
		State streamState `json:"state"`
	}
	if err := json.Unmarshal(msg.Data, &done); err != nil {
		return fmt.Errorf("restoring stream %s: %w", s.Name, err)
	}
	if done.Error != nil {
		return done.Error.err("restoring stream " + s.Name)
	}
	// Sequences survive a restore; message counts may not (limits such as
	// MaxAge apply at once to what the backup held).
	if done.State.LastSeq != s.LastSeq {
		return errs.New(errs.Internal, "restoring stream %s: last sequence %d restored, the backup says %d", s.Name, done.State.LastSeq, s.LastSeq)
	}
	return nil
}
