package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/natsauth"
	"github.com/vpnfleet/vpnfleet/shared/natsserver"
	"github.com/vpnfleet/vpnfleet/shared/natstest"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/version"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testWorkFactor keeps scrypt cheap in tests; the format is the same.
const testWorkFactor = 10

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// populate writes n users, a token and events into a provisioned server,
// and leaves a durable consumer with acknowledged messages.
func populate(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	ctx := ctxT(t)
	users, err := js.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := users.Put(ctx, fmt.Sprintf("u%05d", i), []byte(fmt.Sprintf(`{"name":"user-%d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	tokens, _ := js.KeyValue(ctx, subject.BucketTokens)
	if _, err := tokens.Put(ctx, "tok1", []byte(`{"role":"admin"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := js.Publish(ctx, subject.UserEvent(fmt.Sprintf("u%05d", i)), []byte("event")); err != nil {
			t.Fatal(err)
		}
	}
	c, err := js.CreateOrUpdateConsumer(ctx, subject.StreamEvents, jetstream.ConsumerConfig{Durable: "backup-test", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := c.Fetch(4)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// create backs up s into a byte slice.
func create(t *testing.T, nc *nats.Conn, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if opts.WorkFactor == 0 {
		opts.WorkFactor = testWorkFactor
	}
	if _, err := Create(ctxT(t), nc, &buf, opts); err != nil {
		t.Fatalf("creating backup: %v", err)
	}
	return buf.Bytes()
}

func opener(b []byte) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

// streams lists the streams of a server.
func streams(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var out []string
	names := js.StreamNames(ctxT(t))
	for n := range names.Name() {
		out = append(out, n)
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestRoundTripIntoAProvisionedServer(t *testing.T) {
	src := natstest.Start(t)
	nc := src.Conn()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	populate(t, js, 200)
	file := create(t, nc, Options{Passphrase: "correct horse"})
	if bytes.Contains(file, []byte("user-1")) {
		t.Fatal("an encrypted backup holds a user name in clear")
	}
	m, err := Verify(opener(file), "correct horse")
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if got, _ := m.Messages("KV_" + subject.BucketUsers); got != 200 {
		t.Fatalf("manifest counts %d users, want 200", got)
	}

	// A target whose services started once: every stream exists, empty.
	dst := natstest.Start(t)
	dnc := dst.Conn()
	defer dnc.Close()
	djs, _ := jetstream.New(dnc)
	if _, err := Restore(ctxT(t), dnc, opener(file), RestoreOptions{Passphrase: "correct horse"}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	ctx := ctxT(t)
	users, err := djs.KeyValue(ctx, subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	e, err := users.Get(ctx, "u00123")
	if err != nil || string(e.Value()) != `{"name":"user-123"}` {
		t.Fatalf("restored user: %v, %v", e, err)
	}
	for _, s := range m.Streams {
		info, err := djs.Stream(ctx, s.Name)
		if err != nil {
			t.Fatalf("stream %s after restore: %v", s.Name, err)
		}
		st := info.CachedInfo().State
		if st.Msgs != s.Messages || st.LastSeq != s.LastSeq {
			t.Errorf("stream %s: %d messages, last %d; backup had %d, last %d", s.Name, st.Msgs, st.LastSeq, s.Messages, s.LastSeq)
		}
	}
	// The durable consumer came with its state: 4 of 10 acknowledged.
	c, err := djs.Consumer(ctx, subject.StreamEvents, "backup-test")
	if err != nil {
		t.Fatalf("durable consumer after restore: %v", err)
	}
	if info, _ := c.Info(ctx); info.AckFloor.Stream != 4 || info.NumPending != 6 {
		t.Fatalf("consumer state after restore: ack floor %d, pending %d; want 4, 6", info.AckFloor.Stream, info.NumPending)
	}
	// A bucket restored is a working bucket: writes go on from its revision.
	if rev, err := users.Put(ctx, "new", []byte("x")); err != nil || rev != 201 {
		t.Fatalf("put after restore: revision %d, %v", rev, err)
	}
}

func TestRestoreDataDirKeepsTheTrust(t *testing.T) {
	src := natstest.Start(t)
	nc := src.Conn()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	populate(t, js, 20)
	trustDir := src.Trust().Dir()
	file := create(t, nc, Options{TrustDir: trustDir})

	dir := filepath.Join(t.TempDir(), "data")
	m, err := RestoreDataDir(ctxT(t), dir, opener(file), RestoreOptions{})
	if err != nil {
		t.Fatalf("restore into a data dir: %v", err)
	}
	if len(m.Files) == 0 {
		t.Fatal("the backup holds no trust files")
	}
	trust, err := natsauth.LoadOrCreate(filepath.Join(dir, TrustDir))
	if err != nil {
		t.Fatal(err)
	}
	if trust.Operator() != src.Trust().Operator() || trust.Account() != src.Trust().Account() {
		t.Fatal("the restored data dir has another operator or account")
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(dir, TrustDir, f.Path))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("trust file %s: %v, mode %v", f.Path, err, st.Mode())
		}
	}
	// vpnd would start on it: the data is there under the same account.
	srv, err := natsserver.Start(natsserver.Config{DataDir: dir, Trust: trust}, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	rnc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer rnc.Close()
	rjs, _ := jetstream.New(rnc)
	users, err := rjs.KeyValue(ctxT(t), subject.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := users.Status(ctxT(t)); st.Values() != 20 {
		t.Fatalf("restored users: %d, want 20", st.Values())
	}
	srv.Shutdown()

	// Again into the same dir: refused, nothing moved; --force moves
	// the old store and trust aside.
	_, err = RestoreDataDir(ctxT(t), dir, opener(file), RestoreOptions{})
	if errs.CodeOf(err) != CodeNotEmpty {
		t.Fatalf("restore into a used data dir: %v, want %s", err, CodeNotEmpty)
	}
	if _, err := RestoreDataDir(ctxT(t), dir, opener(file), RestoreOptions{Force: true}); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "*.before-restore-*"))
	if len(aside) != 2 {
		t.Fatalf("moved aside: %v, want the old nats and jetstream dirs", aside)
	}
}

// frames rebuilds a file from parts, for hand-made bad files.
func craft(t *testing.T, hdr Header, sections map[string][]byte, m func(*Manifest)) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := newWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.json(frameHeader, hdr); err != nil {
		t.Fatal(err)
	}
	man := Manifest{Format: hdr.Format, ProductVersion: hdr.ProductVersion, CreatedAt: hdr.CreatedAt}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range sections {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		size, sum, err := w.section(KindStream, name, bytes.NewReader(sections[name]))
		if err != nil {
			t.Fatal(err)
		}
		man.Streams = append(man.Streams, Stream{Name: name, Size: size, SHA256: sum, Config: json.RawMessage(`{}`), State: json.RawMessage(`{}`)})
	}
	if m != nil {
		m(&man)
	}
	if err := w.finish(man); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRefusesBadInputBeforeWritingAnything(t *testing.T) {
	src := natstest.Start(t)
	nc := src.Conn()
	defer nc.Close()
	js, _ := jetstream.New(nc)
	populate(t, js, 50)
	plain := create(t, nc, Options{})
	enc := create(t, nc, Options{Passphrase: "right"})
	all := Required()
	missing := create(t, nc, Options{Streams: slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == "KV_"+subject.BucketSubTokens })})

	old := version.Version
	t.Cleanup(func() { version.Version = old })
	version.Version = "9.1.0"
	fromFuture := create(t, nc, Options{})
	version.Version = "1.0.0"

	flip := func(b []byte, at int) []byte {
		c := slices.Clone(b)
		c[at] ^= 0x40
		return c
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	cases := []struct {
		name, pass string
		file       []byte
		code       string
	}{
		{"truncated in the middle", "", plain[:len(plain)/2], CodeTruncated},
		{"truncated before the checksum", "", plain[:len(plain)-7], CodeTruncated},
		{"truncated to its magic", "", plain[:20], CodeTruncated},
		{"empty", "", nil, CodeNotBackup},
		{"not a backup", "", []byte("PK\x03\x04 a zip file"), CodeNotBackup},
		{"a byte flipped in a snapshot", "", flip(plain, len(plain)/2), CodeCorrupt},
		{"a byte flipped in the manifest", "", flip(plain, len(plain)-100), CodeCorrupt},
		{"a byte flipped in the checksum", "", flip(plain, len(plain)-1), CodeCorrupt},
		{"bytes after the end", "", append(slices.Clone(plain), 0), CodeCorrupt},
		// age cannot tell a cut inside its last chunk from a changed byte.
		{"encrypted, truncated", "right", enc[:len(enc)-40], CodeCorrupt},
		{"encrypted, truncated at a chunk", "right", enc[:len(enc)-len(enc)%(64<<10)+200], CodeCorrupt},
		{"encrypted, a byte flipped", "right", flip(enc, len(enc)/2), CodeCorrupt},
		{"encrypted, wrong passphrase", "wrong", enc, CodePassphrase},
		{"encrypted, no passphrase", "", enc, CodePassphrase},
		{"a stream missing", "", missing, CodeMissingStream},
		{"written by a newer release", "", fromFuture, CodeNewer},
		{"a newer file format", "", craft(t, Header{Format: FormatVersion + 1, ProductVersion: "2.0.0", CreatedAt: now}, nil, nil), CodeNewer},
		{"manifest lists a stream the file lacks", "", craft(t, Header{Format: 1, CreatedAt: now}, map[string][]byte{"A": []byte("a")}, func(m *Manifest) {
			m.Streams = append(m.Streams, Stream{Name: "B", Config: json.RawMessage(`{}`), State: json.RawMessage(`{}`)})
		}), CodeCorrupt},
		{"manifest checksum of a stream is wrong", "", craft(t, Header{Format: 1, CreatedAt: now}, map[string][]byte{"A": []byte("a")}, func(m *Manifest) {
			sum := sha256.Sum256([]byte("b"))
			m.Streams[0].SHA256 = hex.EncodeToString(sum[:])
		}), CodeCorrupt},
	}
	dst := natstest.StartWith(t, natstest.Options{NoProvision: true})
	dnc := dst.Conn()
	defer dnc.Close()
	djs, _ := jetstream.New(dnc)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Restore(ctxT(t), dnc, opener(tc.file), RestoreOptions{Passphrase: tc.pass})
			if err == nil || errs.CodeOf(err) != tc.code {
				t.Fatalf("restore: %v (code %q), want code %s", err, errs.CodeOf(err), tc.code)
			}
			if !errors.Is(err, errs.Invalid) {
				t.Errorf("class of %v is %v, want Invalid", err, errs.ClassOf(err))
			}
			if got := streams(t, djs); len(got) != 0 {
				t.Fatalf("a refused restore created streams: %v", got)
			}
			dir := filepath.Join(t.TempDir(), "data")
			if _, err := RestoreDataDir(ctxT(t), dir, opener(tc.file), RestoreOptions{Passphrase: tc.pass}); errs.CodeOf(err) != tc.code {
				t.Fatalf("restore into a data dir: %v, want code %s", err, tc.code)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused restore made the data dir: %v", err)
			}
			t.Logf("refused: %v", err)
		})
	}

	t.Run("a target that holds data", func(t *testing.T) {
		_, err := Restore(ctxT(t), nc, opener(plain), RestoreOptions{})
		if errs.CodeOf(err) != CodeNotEmpty || !errors.Is(err, errs.Conflict) {
			t.Fatalf("restore over data: %v, want %s", err, CodeNotEmpty)
		}
		users, _ := js.KeyValue(ctxT(t), subject.BucketUsers)
		if st, _ := users.Status(ctxT(t)); st.Values() != 50 {
			t.Fatalf("the refused restore changed the target: %d users", st.Values())
		}
		if _, err := Restore(ctxT(t), nc, opener(plain), RestoreOptions{Force: true}); err != nil {
			t.Fatalf("forced restore: %v", err)
		}
	})
}

func TestPruneKeepsTheNewest(t *testing.T) {
	dir := t.TempDir()
	names := []string{"vpnfleet-20250101T000000.000Z.vpnbak", "vpnfleet-20250102T000000.000Z.vpnbak",
		"vpnfleet-20250103T000000.000Z.vpnbak", "notes.txt"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := Prune(dir, 2)
	if err != nil || len(removed) != 1 || filepath.Base(removed[0]) != names[0] {
		t.Fatalf("prune: %v, %v", removed, err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 3 {
		t.Fatalf("left %d files, want 3", len(left))
	}
}

// FuzzDecode feeds the decoder arbitrary files: it must refuse them with
// an Invalid error (never panic, never accept a file whose checksum does
// not hold).
func FuzzDecode(f *testing.F) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	good := func(sections map[string][]byte) []byte {
		var buf bytes.Buffer
		w, _ := newWriter(&buf)
		_ = w.json(frameHeader, Header{Format: 1, ProductVersion: "1.0.0", CreatedAt: now})
		m := Manifest{Format: 1, ProductVersion: "1.0.0", CreatedAt: now}
		for _, name := range slices.Sorted(mapKeys(sections)) {
			size, sum, _ := w.section(KindStream, name, bytes.NewReader(sections[name]))
			m.Streams = append(m.Streams, Stream{Name: name, Size: size, SHA256: sum, Config: json.RawMessage(`{}`), State: json.RawMessage(`{}`)})
		}
		_ = w.finish(m)
		return buf.Bytes()
	}
	f.Add(good(nil))
	f.Add(good(map[string][]byte{"KV_users": []byte("snapshot bytes"), "EVENTS": bytes.Repeat([]byte{7}, 3000)}))
	f.Add([]byte(magic))
	f.Add([]byte(magic + "H\x00\x00\x00\x02{}"))
	f.Add([]byte(magic + "H\xff\xff\xff\xff"))
	f.Add([]byte(ageMagic + "-> scrypt abc 10\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, err := Plaintext(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("plaintext: %v is not Invalid", err)
			}
			return
		}
		m, err := Decode(r, nil, nil)
		if err != nil {
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("decode: %v is not Invalid", err)
			}
			return
		}
		// Accepted: then it is a file whose last 32 bytes are the
		// SHA-256 of the rest, and whose manifest matches its header.
		if len(data) < sha256.Size {
			t.Fatalf("accepted %d bytes", len(data))
		}
		sum := sha256.Sum256(data[:len(data)-sha256.Size])
		if !bytes.Equal(sum[:], data[len(data)-sha256.Size:]) {
			t.Fatal("accepted a file whose checksum does not hold")
		}
		if m.Format != 1 {
			t.Fatalf("accepted format %d", m.Format)
		}
	})
}

func mapKeys(m map[string][]byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
