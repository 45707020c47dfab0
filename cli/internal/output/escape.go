package output

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Escape makes text the API returned safe to print on a terminal. Control
// characters (C0 such as ESC, NUL and newline, DEL, C1), the Unicode
// bidirectional controls and bytes that are not UTF-8 are written as Go
// escapes (\x1b, \n, \u202e, \xff), so a note or a log line stored by
// someone else can neither drive the reader's terminal (clear it, set its
// title, fake a prompt) nor disguise itself. Printable text, non-ASCII
// included, is unchanged.
func Escape(s string) string { return escape(s, false) }

// EscapeLines is Escape for multi-line text (a QR code drawn in
// characters, a log): newlines are kept.
func EscapeLines(s string) string { return escape(s, true) }

func escape(s string, keepNewlines bool) string {
	i := unsafeAt(s, keepNewlines)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for s = s[i:]; s != ""; {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[0])>>4, 16) + strconv.FormatUint(uint64(s[0])&0xf, 16))
		case unsafeRune(r, keepNewlines):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// unsafeAt returns the index of the first byte of s that must be
// escaped, or -1.
func unsafeAt(s string, keepNewlines bool) int {
	for i, r := range s {
		if unsafeRune(r, keepNewlines) || r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD") {
			return i
		}
	}
	return -1
}

func unsafeRune(r rune, keepNewlines bool) bool {
	if r == '\n' && keepNewlines {
		return false
	}
	return unicode.IsControl(r) || r == '\u061c' || r == '\u200e' || r == '\u200f' ||
		r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

// escapeArgs escapes the string, error and Stringer arguments of a
// format, which is the CLI's own text.
func escapeArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = Escape(v)
		case error:
			out[i] = EscapeLines(v.Error())
		case interface{ String() string }:
			out[i] = Escape(v.String())
		default:
			if rv := reflect.ValueOf(a); rv.Kind() == reflect.String {
				out[i] = Escape(rv.String()) // a named string type (a status, a protocol)
			} else {
				out[i] = a
			}
		}
	}
	return out
}

// Sprintf is fmt.Sprintf with Escape applied to the arguments: for lines
// the CLI writes around text it got from the API.
func Sprintf(format string, args ...any) string {
	return fmt.Sprintf(format, escapeArgs(args)...)
}

// escapeRows returns the rows with every cell escaped.
func escapeRows(rows [][]string) [][]string {
	out := make([][]string, len(rows))
	for i, r := range rows {
		out[i] = make([]string, len(r))
		for j, c := range r {
			out[i][j] = Escape(c)
		}
	}
	return out
}

// EscapeJSON writes the characters Escape stands for that encoding/json
// leaves as they are (DEL, C1, bidirectional controls; it escapes C0
// itself) as \u escapes, which mean the same in a JSON string. It does
// the same for YAML whose scalars holding them are double-quoted (see
// quoteUnsafe).
func EscapeJSON(s string) string {
	if unsafeAt(s, true) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r, true) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quoteUnsafe gives every scalar of a YAML document that holds a
// character Escape stands for the double-quoted style, where the YAML
// encoder escapes control characters and \u escapes are understood (it
// leaves the bidirectional controls raw; EscapeJSON writes those).
func quoteUnsafe(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && unsafeAt(n.Value, false) >= 0 {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		quoteUnsafe(c)
	}
}
