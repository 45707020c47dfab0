// Package output prints what the vpn CLI shows: tables sized to the
// terminal, JSON or YAML of the API's documents (-o json|yaml), or only
// ids (--quiet), so people read it and scripts parse it.
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Formats is every -o value.
var Formats = []string{"table", "json", "yaml"}

// Printer writes in one format.
type Printer struct {
	W      io.Writer
	Format string
	Quiet  bool
	// Width is the terminal's width; tables shrink their widest columns
	// to fit it.
	Width int
}

// Structured reports whether the format is JSON or YAML.
func (p Printer) Structured() bool { return p.Format == "json" || p.Format == "yaml" }

// Value prints v as JSON or YAML (keys as in the API's JSON).
func (p Printer) Value(v any) error {
	switch p.Format {
	case "yaml":
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		var generic any
		if err := json.Unmarshal(data, &generic); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		var doc yaml.Node
		if err := doc.Encode(generic); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		quoteUnsafe(&doc)
		var b strings.Builder
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(&doc); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("encoding output: %w", err)
		}
		_, err = io.WriteString(p.W, EscapeJSON(b.String()))
		return err
	default:
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return err
		}
		_, err := io.WriteString(p.W, EscapeJSON(b.String()))
		return err
	}
}

// Table prints rows under headers, with columns padded and, when the
// table is wider than the terminal, the widest columns cut with "…".
// Cells are escaped (see Escape).
func (p Printer) Table(headers []string, rows [][]string) error {
	rows = escapeRows(rows)
	widths := make([]int, len(headers))
	for i, h := range headers {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	fit(widths, p.Width, 3)
	var b strings.Builder
	line := func(cells []string) {
		for i, c := range cells {
			c = cut(c, widths[i])
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+3))
			}
		}
		b.WriteString("\n")
	}
	line(headers)
	for _, r := range rows {
		line(r)
	}
	_, err := io.WriteString(p.W, b.String())
	return err
}

// KeyValues prints pairs as two aligned columns, for one object. Values
// are escaped (see Escape).
func (p Printer) KeyValues(pairs [][2]string) error {
	w := 0
	for _, kv := range pairs {
		w = max(w, len(kv[0]))
	}
	var b strings.Builder
	for _, kv := range pairs {
		v := Escape(kv[1])
		if p.Width > 0 {
			v = cut(v, max(p.Width-w-2, 10))
		}
		fmt.Fprintf(&b, "%-*s  %s\n", w, kv[0], v)
	}
	_, err := io.WriteString(p.W, b.String())
	return err
}

// Line prints one line; its string arguments are escaped (see Escape).
func (p Printer) Line(format string, args ...any) {
	fmt.Fprintln(p.W, Sprintf(format, args...))
}

// fit shrinks the widest columns until the row fits total (gap between
// columns), never below 8 characters.
func fit(widths []int, total, gap int) {
	if total <= 0 {
		return
	}
	sum := func() int {
		s := gap * (len(widths) - 1)
		for _, w := range widths {
			s += w
		}
		return s
	}
	for sum() > total {
		wi := 0
		for i, w := range widths {
			if w > widths[wi] {
				wi = i
			}
		}
		if widths[wi] <= 8 {
			return
		}
		widths[wi]--
	}
}

func cut(s string, w int) string {
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:w-1]) + "…"
}

// Age is a coarse age: "<1m", "5m", "3h", "2d".
func Age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "<1m"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// Bytes is a byte count in binary units: "0", "512B", "1.5GiB".
func Bytes(n int64) string {
	if n == 0 {
		return "0"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + string("KMGTPE"[exp]) + "iB"
}
