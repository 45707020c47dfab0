// Package backup is the product's backup file and the JetStream plumbing
// that fills and empties it: a consistent snapshot of every stream and
// bucket declared in shared/subject (JetStream's own stream snapshot API,
// consumers and their state included), optionally the NATS trust of an
// embedded server, a manifest (product version, time, per-stream message
// counts, sizes, SHA-256 checksums), all optionally encrypted with a
// passphrase (age, scrypt recipient).
//
// A file is read in full and checked (every checksum, the manifest, the
// version, every declared stream present) before anything is restored, so
// a corrupted or truncated file, a wrong passphrase, a missing stream or a
// newer version is refused with one error naming the problem and nothing
// is written.
package backup

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// FormatVersion is the version of the file layout this build writes and
// the newest it reads.
const FormatVersion = 1

// Ext is the file name extension of backups.
const Ext = ".vpnbak"

// magic opens every unencrypted backup file.
const magic = "VPNFLEET-BACKUP\n"

// maxFrame bounds one frame's payload, so that a hostile file cannot make
// the reader allocate more.
const maxFrame = 1 << 20

// Frame types. A file is magic, a header, sections (start, data...,
// end), the manifest, and the SHA-256 of everything before it.
const (
	frameHeader   = 'H'
	frameStart    = 'S'
	frameData     = 'D'
	frameEnd      = 'E'
	frameManifest = 'M'
)

// Section kinds.
const (
	// KindStream is a JetStream stream snapshot (a KV bucket is the
	// stream KV_<bucket>).
	KindStream = "stream"
	// KindFile is a file of the embedded server's NATS trust, by its path
	// below <data-dir>/nats.
	KindFile = "file"
)

// Codes of the refusals, so callers answer by code (errs.CodeOf).
const (
	CodeCorrupt        = "backup_corrupt"
	CodeTruncated      = "backup_truncated"
	CodeNewer          = "backup_newer_version"
	CodeMissingStream  = "backup_missing_stream"
	CodePassphrase     = "backup_passphrase"
	CodeNotEmpty       = "restore_target_not_empty"
	CodeNotBackup      = "backup_not_a_backup"
	CodeUnknownSection = "backup_unknown_section"
)

// Header opens the file: enough to refuse a newer one before reading on.
type Header struct {
	Format         int       `json:"format"`
	ProductVersion string    `json:"product_version"`
	CreatedAt      time.Time `json:"created_at"`
}

// Manifest closes the file: what it holds, with checksums.
type Manifest struct {
	Format         int       `json:"format"`
	ProductVersion string    `json:"product_version"`
	CreatedAt      time.Time `json:"created_at"`
	// Streams are the snapshots, in the order they were taken.
	Streams []Stream `json:"streams"`
	// Files are the NATS trust files, when the backup carries them.
	Files []File `json:"files,omitempty"`
}

// Stream is one stream's snapshot in the manifest.
type Stream struct {
	Name string `json:"name"`
	// Messages, Bytes, FirstSeq and LastSeq are the stream's state when
	// its snapshot was taken.
	Messages  uint64 `json:"messages"`
	Bytes     uint64 `json:"bytes"`
	FirstSeq  uint64 `json:"first_seq"`
	LastSeq   uint64 `json:"last_seq"`
	Consumers int    `json:"consumers"`
	// Size and SHA256 are the snapshot's own (the section's data).
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Config and State are the stream's configuration and state as the
	// snapshot API returned them; a restore sends them back.
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

// File is one NATS trust file in the manifest.
type File struct {
	Path   string `json:"path"`
	Mode   uint32 `json:"mode"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Messages returns the message count of stream name, and whether the
// manifest has it.
func (m Manifest) Messages(name string) (uint64, bool) {
	for _, s := range m.Streams {
		if s.Name == name {
			return s.Messages, true
		}
	}
	return 0, false
}

// Size is the sum of the sections' sizes.
func (m Manifest) Size() int64 {
	var n int64
	for _, s := range m.Streams {
		n += s.Size
	}
	for _, f := range m.Files {
		n += f.Size
	}
	return n
}

// sectionStart opens a section.
type sectionStart struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// writer writes the frames of a file and hashes every byte.
type writer struct {
	w   io.Writer
	sum hash.Hash
	buf [5]byte
}

func newWriter(w io.Writer) (*writer, error) {
	fw := &writer{w: w, sum: sha256.New()}
	return fw, fw.raw([]byte(magic))
}

func (w *writer) raw(p []byte) error {
	w.sum.Write(p)
	if _, err := w.w.Write(p); err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	return nil
}

func (w *writer) frame(typ byte, p []byte) error {
	if len(p) > maxFrame {
		return errs.New(errs.Internal, "backup frame of %d bytes exceeds %d", len(p), maxFrame)
	}
	w.buf[0] = typ
	binary.BigEndian.PutUint32(w.buf[1:], uint32(len(p)))
	if err := w.raw(w.buf[:]); err != nil {
		return err
	}
	return w.raw(p)
}

func (w *writer) json(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding backup frame: %w", err)
	}
	return w.frame(typ, b)
}

// section writes one section from r and returns its size and checksum.
func (w *writer) section(kind, name string, r io.Reader) (int64, string, error) {
	if err := w.json(frameStart, sectionStart{Kind: kind, Name: name}); err != nil {
		return 0, "", err
	}
	sum := sha256.New()
	buf := make([]byte, 128<<10)
	var size int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			sum.Write(buf[:n])
			size += int64(n)
			if werr := w.frame(frameData, buf[:n]); werr != nil {
				return 0, "", werr
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, "", err
		}
	}
	return size, hex.EncodeToString(sum.Sum(nil)), w.frame(frameEnd, nil)
}

// finish writes the manifest and the trailing checksum.
func (w *writer) finish(m Manifest) error {
	if err := w.json(frameManifest, m); err != nil {
		return err
	}
	_, err := w.w.Write(w.sum.Sum(nil))
	if err != nil {
		return fmt.Errorf("writing backup: %w", err)
	}
	return nil
}

// Section is one section met while decoding.
type Section struct {
	Kind string
	Name string
}

// Visit is called for each section with a reader of its data; it must
// read it to the end or return an error.
type Visit func(s Section, data io.Reader) error

// Decode reads a whole unencrypted backup, calls visit for every section
// (nil visit discards them), and checks everything: the magic, the
// format version, frame sizes, each section against the manifest (size,
// SHA-256), that every stream in required is there, and the checksum over
// the whole file. An error names the first problem and carries a code
// (CodeCorrupt, CodeTruncated, CodeNewer, CodeMissingStream, ...).
// Decode never panics and allocates at most a few frames, whatever the
// input: it is fuzzed.
func Decode(r io.Reader, required []string, visit Visit) (Manifest, error) {
	d := &decoder{r: bufio.NewReaderSize(r, 64<<10), sum: sha256.New()}
	m, err := d.decode(required, visit)
	if err != nil {
		return Manifest{}, err
	}
	return m, nil
}

type decoder struct {
	r   *bufio.Reader
	sum hash.Hash
	off int64
	buf []byte
	// ended is set when the input ended before a read was complete.
	ended bool
}

func corrupt(format string, args ...any) error {
	return errs.WithCode(errs.New(errs.Invalid, "backup file is corrupt: "+format, args...), CodeCorrupt)
}

func truncated(off int64) error {
	return errs.WithCode(errs.New(errs.Invalid, "backup file is truncated: it ends at byte %d before its manifest and checksum", off), CodeTruncated)
}

// full reads exactly len(p) bytes, hashing them.
func (d *decoder) full(p []byte) error {
	n, err := io.ReadFull(d.r, p)
	d.sum.Write(p[:n])
	d.off += int64(n)
	var classified *errs.Error
	if errors.As(err, &classified) {
		return err // the decryption's own verdict
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		d.ended = true
		return truncated(d.off)
	}
	if err != nil {
		return fmt.Errorf("reading backup: %w", err)
	}
	return nil
}

// frame reads one frame; its payload is valid until the next call.
func (d *decoder) frame() (byte, []byte, error) {
	var h [5]byte
	if err := d.full(h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, corrupt("frame at byte %d claims %d bytes (at most %d)", d.off-5, n, maxFrame)
	}
	if cap(d.buf) < int(n) {
		d.buf = make([]byte, n)
	}
	p := d.buf[:n]
	if err := d.full(p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

func (d *decoder) decode(required []string, visit Visit) (Manifest, error) {
	var mg [len(magic)]byte
	err := d.full(mg[:])
	switch {
	case err == nil && string(mg[:]) == magic:
	case err != nil && !d.ended:
		return Manifest{}, err // the decryption's verdict, or a read error
	case err != nil && d.off > 0 && string(mg[:d.off]) == magic[:d.off]:
		return Manifest{}, err // the start of a backup, cut short
	default:
		return Manifest{}, errs.WithCode(errs.New(errs.Invalid, "not a vpnfleet backup (no %q at its start)", strings.TrimSpace(magic)), CodeNotBackup)
	}
	typ, p, err := d.frame()
	if err != nil {
		return Manifest{}, err
	}
	var hdr Header
	if typ != frameHeader || json.Unmarshal(p, &hdr) != nil {
		return Manifest{}, corrupt("no header after the magic")
	}
	if err := checkVersion(hdr.Format, hdr.ProductVersion); err != nil {
		return Manifest{}, err
	}
	type seen struct {
		Section
		size int64
		sum  string
	}
	var sections []seen
	for {
		typ, p, err := d.frame()
		if err != nil {
			return Manifest{}, err
		}
		if typ == frameManifest {
			var m Manifest
			if err := json.Unmarshal(p, &m); err != nil {
				return Manifest{}, corrupt("manifest: %v", err)
			}
			want := d.sum.Sum(nil)
			var got [sha256.Size]byte
			if err := d.full(got[:]); err != nil {
				return Manifest{}, err
			}
			if !bytes.Equal(got[:], want) {
				return Manifest{}, corrupt("checksum of the file does not match (%x, computed %x)", got[:8], want[:8])
			}
			if n, _ := d.r.Read(make([]byte, 1)); n > 0 {
				return Manifest{}, corrupt("bytes after the checksum at byte %d", d.off)
			}
			if err := checkManifest(m, hdr, func(kind, name string) (int64, string, bool) {
				for _, s := range sections {
					if s.Kind == kind && s.Name == name {
						return s.size, s.sum, true
					}
				}
				return 0, "", false
			}, len(sections)); err != nil {
				return Manifest{}, err
			}
			if err := checkRequired(m, required); err != nil {
				return Manifest{}, err
			}
			return m, nil
		}
		if typ != frameStart {
			return Manifest{}, corrupt("frame %q at byte %d where a section or the manifest must start", typ, d.off-int64(len(p))-5)
		}
		var st sectionStart
		if err := json.Unmarshal(p, &st); err != nil {
			return Manifest{}, corrupt("section header at byte %d: %v", d.off, err)
		}
		if err := checkSectionName(st.Kind, st.Name); err != nil {
			return Manifest{}, err
		}
		for _, s := range sections {
			if s.Kind == st.Kind && s.Name == st.Name {
				return Manifest{}, corrupt("%s %s appears twice", st.Kind, st.Name)
			}
		}
		size, sum, err := d.sectionData(Section(st), visit)
		if err != nil {
			return Manifest{}, err
		}
		sections = append(sections, seen{Section: Section(st), size: size, sum: sum})
	}
}

// sectionData streams one section's data frames to visit through a pipe
// of frames, hashing them.
func (d *decoder) sectionData(s Section, visit Visit) (int64, string, error) {
	sr := &sectionReader{d: d, sum: sha256.New()}
	if visit == nil {
		visit = func(_ Section, r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
	}
	if err := visit(s, sr); err != nil {
		return 0, "", err
	}
	if sr.err != nil && !errors.Is(sr.err, io.EOF) {
		return 0, "", sr.err
	}
	if !sr.done {
		// The visitor stopped early: drain the rest to keep the framing.
		if _, err := io.Copy(io.Discard, sr); err != nil {
			return 0, "", err
		}
	}
	return sr.size, hex.EncodeToString(sr.sum.Sum(nil)), nil
}

// sectionReader reads the data frames of one section until its end frame.
type sectionReader struct {
	d    *decoder
	sum  hash.Hash
	size int64
	rest []byte
	done bool
	err  error
}

func (r *sectionReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if r.err != nil {
			return 0, r.err
		}
		typ, payload, err := r.d.frame()
		switch {
		case err != nil:
			r.err = err
		case typ == frameEnd && len(payload) == 0:
			r.done = true
		case typ == frameData && len(payload) > 0:
			r.rest = payload
			r.sum.Write(payload)
			r.size += int64(len(payload))
		default:
			r.err = corrupt("frame %q inside a section at byte %d", typ, r.d.off)
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// checkSectionName refuses kinds this build does not know and names that
// could escape a directory when restored.
func checkSectionName(kind, name string) error {
	switch kind {
	case KindStream:
		if name == "" || strings.ContainsAny(name, " \t\r\n.*>/\\") {
			return corrupt("stream name %q", name)
		}
	case KindFile:
		if !validFilePath(name) {
			return corrupt("file path %q", name)
		}
	default:
		return errs.WithCode(errs.New(errs.Invalid, "backup holds a section of kind %q this version does not know", kind), CodeUnknownSection)
	}
	return nil
}

// validFilePath accepts a clean relative slash path inside its directory.
func validFilePath(p string) bool {
	return p != "" && len(p) <= 256 && path.Clean(p) == p && !path.IsAbs(p) &&
		p != "." && !strings.HasPrefix(p, "../") && p != ".." && !strings.ContainsAny(p, "\\\x00")
}

// checkManifest compares the manifest with the header and the sections
// read.
func checkManifest(m Manifest, hdr Header, section func(kind, name string) (int64, string, bool), sections int) error {
	if m.Format != hdr.Format || m.ProductVersion != hdr.ProductVersion || !m.CreatedAt.Equal(hdr.CreatedAt) {
		return corrupt("manifest (format %d, version %q, %s) differs from the header (format %d, version %q, %s)",
			m.Format, m.ProductVersion, m.CreatedAt.Format(time.RFC3339), hdr.Format, hdr.ProductVersion, hdr.CreatedAt.Format(time.RFC3339))
	}
	if len(m.Streams)+len(m.Files) != sections {
		return corrupt("manifest lists %d sections, the file holds %d", len(m.Streams)+len(m.Files), sections)
	}
	check := func(kind, name string, size int64, sum string) error {
		gotSize, gotSum, ok := section(kind, name)
		switch {
		case !ok:
			return errs.WithCode(errs.New(errs.Invalid, "backup is incomplete: the manifest lists %s %s but the file does not hold it", kind, name), CodeMissingStream)
		case gotSize != size:
			return corrupt("%s %s holds %d bytes, the manifest says %d", kind, name, gotSize, size)
		case gotSum != sum:
			return corrupt("%s %s: SHA-256 %s, the manifest says %s", kind, name, short(gotSum), short(sum))
		}
		return nil
	}
	for _, s := range m.Streams {
		if err := check(KindStream, s.Name, s.Size, s.SHA256); err != nil {
			return err
		}
		if !json.Valid(s.Config) || !json.Valid(s.State) {
			return corrupt("stream %s: config or state is not JSON", s.Name)
		}
	}
	for _, f := range m.Files {
		if err := check(KindFile, f.Path, f.Size, f.SHA256); err != nil {
			return err
		}
	}
	return nil
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16]
	}
	return sum
}

// checkRequired refuses a backup that lacks a stream this version needs.
func checkRequired(m Manifest, required []string) error {
	var missing []string
	for _, name := range required {
		if !slices.ContainsFunc(m.Streams, func(s Stream) bool { return s.Name == name }) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return errs.WithCode(errs.New(errs.Invalid, "backup is missing stream %s (this version needs every stream and bucket it declares)",
			strings.Join(missing, ", ")), CodeMissingStream)
	}
	return nil
}
