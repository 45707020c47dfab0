package output_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vpnfleet/vpnfleet/cli/internal/output"
)

func TestEscape(t *testing.T) {
	for _, tt := range []struct {
		name, in, want, lines string
	}{
		{"plain", "team b", "team b", "team b"},
		{"non-ASCII", "café – 東京 \uFFFD", "café – 東京 \uFFFD", "café – 東京 \uFFFD"},
		{"ESC sequences", "\x1b]0;owned\x07\x1b[2J", `\x1b]0;owned\a\x1b[2J`, `\x1b]0;owned\a\x1b[2J`},
		{"NUL", "a\x00b", `a\x00b`, `a\x00b`},
		{"newline and tab", "a\nb\tc", `a\nb\tc`, "a\nb\\tc"},
		{"carriage return", "ok\rfake", `ok\rfake`, `ok\rfake`},
		{"DEL", "a\x7fb", `a\x7fb`, `a\x7fb`},
		{"C1 CSI", "a\u009b2J", `a\u009b2J`, `a\u009b2J`},
		{"bidi override", "exe.\u202etxt", `exe.\u202etxt`, `exe.\u202etxt`},
		{"not UTF-8", "a\xffb", `a\xffb`, `a\xffb`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := output.Escape(tt.in); got != tt.want {
				t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := output.EscapeLines(tt.in); got != tt.lines {
				t.Errorf("EscapeLines(%q) = %q, want %q", tt.in, got, tt.lines)
			}
		})
	}
}

// TestPrinterEscapesServerText: every way the CLI prints what the API
// returned writes no control character a terminal would act on, and JSON
// output still decodes to the same text.
func TestPrinterEscapesServerText(t *testing.T) {
	const evil = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202e"
	clean := func(t *testing.T, out string) {
		t.Helper()
		for _, r := range out {
			if r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u202e') {
				t.Fatalf("output holds %U: %q", r, out)
			}
		}
	}
	for _, tt := range []struct {
		name  string
		print func(p output.Printer) error
	}{
		{"table", func(p output.Printer) error { return p.Table([]string{"NAME", "NOTE"}, [][]string{{"bob", evil}}) }},
		{"key values", func(p output.Printer) error { return p.KeyValues([][2]string{{"Note", evil}}) }},
		{"line", func(p output.Printer) error {
			type status string
			p.Line("note %s: %v (%s)", evil, errors.New(evil), status(evil))
			return nil
		}},
		{"json", func(p output.Printer) error {
			p.Format = "json"
			return p.Value(map[string]string{"note": evil})
		}},
		{"yaml", func(p output.Printer) error {
			p.Format = "yaml"
			return p.Value(map[string]any{"note": evil, "list": []string{"plain", evil}})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.print(output.Printer{W: &b, Width: 200}); err != nil {
				t.Fatal(err)
			}
			clean(t, b.String())
			switch tt.name {
			case "json":
				var v map[string]string
				if err := json.Unmarshal(b.Bytes(), &v); err != nil || v["note"] != evil {
					t.Fatalf("json %q decodes to %q (%v)", b.String(), v["note"], err)
				}
			case "yaml":
				var v struct {
					Note string   `yaml:"note"`
					List []string `yaml:"list"`
				}
				if err := yaml.Unmarshal(b.Bytes(), &v); err != nil || v.Note != evil || len(v.List) != 2 || v.List[1] != evil {
					t.Fatalf("yaml %q decodes to %q (%v)", b.String(), v, err)
				}
			}
			if !strings.Contains(b.String(), "owned") {
				t.Fatalf("the text itself is lost: %q", b.String())
			}
		})
	}
}
