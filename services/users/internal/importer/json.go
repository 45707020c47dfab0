package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// element is one record of a JSON file: its raw bytes and the line it
// starts on.
type element struct {
	raw  json.RawMessage
	line int
}

// elements splits a JSON document, an array or an object holding one under
// key, into its elements with their lines. wrapped reports an object.
func elements(data []byte, key string) ([]element, error) {
	if err := checkText(data); err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	dec := json.NewDecoder(bytes.NewReader(data))
	// lineAt counts newlines from where it last counted when offsets grow
	// (elements come in order), so a file of many records is read in
	// linear time.
	lastOff, lastLine := 0, 1
	lineAt := func(off int64) int {
		o := min(int(off), len(data))
		if o < lastOff {
			lastOff, lastLine = 0, 1
		}
		lastLine += bytes.Count(data[lastOff:o], []byte{'\n'})
		lastOff = o
		return lastLine
	}
	bad := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errs.Field("data", fmt.Sprintf("line %d: is not valid JSON: %v", lineAt(se.Offset), se))
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errs.Field("data", "is not valid JSON: it ends too early")
		}
		return errs.Field("data", "is not valid JSON: "+err.Error())
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, bad(err)
	}
	if d, ok := tok.(json.Delim); ok && d == '{' {
		found := false
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, bad(err)
			}
			if s, _ := k.(string); s == key {
				found = true
				break
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, bad(err)
			}
		}
		if !found {
			return nil, errs.Field("data", fmt.Sprintf("is a JSON object without %q: want an array of users or {%q: [...]}", key, key))
		}
		if tok, err = dec.Token(); err != nil {
			return nil, bad(err)
		}
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return nil, errs.Field("data", fmt.Sprintf("must be a JSON array of users or an object {%q: [...]}", key))
	}
	var out []element
	for dec.More() {
		if len(out) >= MaxRecords {
			return nil, errs.Field("data", fmt.Sprintf("holds more than %d records", MaxRecords))
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, bad(err)
		}
		// InputOffset is just past the element; find where it starts.
		end := dec.InputOffset()
		start := end - int64(len(raw))
		out = append(out, element{raw: raw, line: lineAt(start)})
	}
	if _, err := dec.Token(); err != nil {
		return nil, bad(err)
	}
	return out, nil
}

// decodeElement unmarshals one element into v, reporting a type error as a
// problem of the field it names.
func decodeElement(rec *Record, raw json.RawMessage, v any) bool {
	if !validUTF8(rec, raw) {
		return false
	}
	if len(raw) == 0 || raw[0] != '{' {
		rec.problem("record", "must be a JSON object")
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			rec.problem(te.Field, fmt.Sprintf("must be a JSON %s, not %s", jsonKind(te.Type.Kind().String()), te.Value))
		} else {
			rec.problem("record", "cannot be read: "+strings.TrimPrefix(err.Error(), "json: "))
		}
		return false
	}
	return true
}

func jsonKind(k string) string {
	switch {
	case strings.HasPrefix(k, "int"), strings.HasPrefix(k, "uint"), strings.HasPrefix(k, "float"):
		return "number"
	case k == "slice":
		return "array"
	case k == "struct", k == "map":
		return "object"
	}
	return k
}

// DecodeJSON reads this product's own export: an array of users or
// {"users": [...]} (a list reply), each a user record with id and
// credentials. Server-kept fields (usage windows, revision) are dropped.
func DecodeJSON(data []byte) ([]Record, error) {
	els, err := elements(data, "users")
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(els))
	for i, el := range els {
		rec := Record{Pos: job.Problem{Record: i + 1, Line: el.line}}
		var u user.User
		var probe struct {
			Protocols json.RawMessage `json:"protocols"`
			Placement json.RawMessage `json:"placement"`
		}
		if decodeElement(&rec, el.raw, &u) && decodeElement(&rec, el.raw, &probe) {
			u.Revision = 0
			u.Usage.Windows = nil
			if len(probe.Placement) == 0 {
				u.Placement = user.Placement{All: true}
			}
			rec.Protocols = len(probe.Protocols) > 0 && string(probe.Protocols) != "null"
			rec.User = u
			rec.Pos.Name = u.Name
		}
		out = append(out, rec)
	}
	return out, nil
}
