// Package importer reads the user files bulk import jobs take: CSV, this
// product's own JSON export, the Rust predecessor's users/<uuid>/config.json
// directories (as a tar archive) and Marzban's GET /api/users body. Each
// decoder turns a file into records, in file order, each with where it
// starts (record number, line, or file inside the archive), the user it
// describes as far as the file says (the registry completes and checks it),
// and the problems and mapping notes found while reading it. A decoder
// never fails on one bad record; it fails only when the file as a whole
// cannot be read (not the format, wrong encoding, too big).
package importer

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// MaxRecords bounds the records one file may hold.
const MaxRecords = 200_000

// Record is one user read from a file.
type Record struct {
	// Pos says where the record is (Field and Rule empty).
	Pos job.Problem
	// User holds what the file says; ID and Credentials only when the
	// file carries them (they are then kept, so existing links work).
	User user.User
	// Protocols is true when the file names the user's protocols (else
	// the registry's default applies).
	Protocols bool
	// Problems are what is wrong with the record; Warnings mapping notes.
	Problems []job.Problem
	Warnings []job.Problem
}

func (r *Record) problem(field, rule string) {
	p := r.Pos
	p.Field, p.Rule = field, rule
	r.Problems = append(r.Problems, p)
}

func (r *Record) warn(field, rule string) {
	p := r.Pos
	p.Field, p.Rule = field, rule
	r.Warnings = append(r.Warnings, p)
}

// Decode reads data in format (job.FormatAuto detects it) and returns the
// format it used and the records.
func Decode(format job.Format, data []byte) (job.Format, []Record, error) {
	if format == job.FormatAuto {
		format = Detect(data)
	}
	var recs []Record
	var err error
	switch format {
	case job.FormatCSV:
		recs, err = DecodeCSV(data)
	case job.FormatJSON:
		recs, err = DecodeJSON(data)
	case job.FormatMarzban:
		recs, err = DecodeMarzban(data)
	case job.FormatSeedRust:
		recs, err = DecodeSeedRust(data)
	default:
		return format, nil, errs.Field("format", fmt.Sprintf("unknown format %q (want csv, json, seed-rust or marzban)", truncate(string(format))))
	}
	return format, recs, err
}

// Detect guesses the format of data: gzip or tar is seed-rust, JSON with
// Marzban's "username" and "proxies" is marzban, other JSON json, the rest
// csv.
func Detect(data []byte) job.Format {
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) || isTar(data) {
		return job.FormatSeedRust
	}
	trimmed := bytes.TrimLeft(bytes.TrimPrefix(data, utf8BOM), " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		if bytes.Contains(data, []byte(`"username"`)) && bytes.Contains(data, []byte(`"proxies"`)) {
			return job.FormatMarzban
		}
		return job.FormatJSON
	}
	return job.FormatCSV
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// checkText refuses data that is not UTF-8 as a whole: a UTF-16 byte
// order mark, or NUL bytes (UTF-16 without one).
func checkText(data []byte) error {
	switch {
	case bytes.HasPrefix(data, []byte{0xff, 0xfe}), bytes.HasPrefix(data, []byte{0xfe, 0xff}):
		return errs.Field("data", "is UTF-16; save the file as UTF-8")
	case bytes.IndexByte(data, 0) >= 0:
		return errs.Field("data", "holds NUL bytes: not a UTF-8 text file (UTF-16 or binary?)")
	}
	return nil
}

// validUTF8 reports a record's text that is not UTF-8.
func validUTF8(r *Record, raw []byte) bool {
	if utf8.Valid(raw) {
		return true
	}
	r.problem("encoding", "is not valid UTF-8 (convert the file to UTF-8)")
	return false
}

// truncate keeps echoed input short in messages.
func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:40] + "..."
}
