package app_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vpnfleet/vpnfleet/cli/internal/app"
)

// commands returns every command of the tree, groups included.
func commands() []*cobra.Command {
	var out []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out = append(out, c)
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(app.Root())
	return out
}

// TestEveryCommandHasExamples: `--help` of every command (cobra's own help
// and completion aside) shows examples of that command.
func TestEveryCommandHasExamples(t *testing.T) {
	for _, c := range commands() {
		t.Run(c.CommandPath(), func(t *testing.T) {
			if strings.TrimSpace(c.Example) == "" {
				t.Fatal("no examples")
			}
			for _, line := range strings.Split(strings.TrimRight(c.Example, "\n"), "\n") {
				if !strings.HasPrefix(line, "  ") {
					t.Fatalf("example line %q is not indented by two spaces", line)
				}
			}
			if !strings.Contains(c.Example, c.CommandPath()) {
				t.Fatalf("examples do not show %q:\n%s", c.CommandPath(), c.Example)
			}
		})
	}
}

// TestFlagsShowTheirType: help shows a boolean flag bare (--detach) and
// no flag's usage names a made-up argument (pflag takes a backquoted word
// in the usage as the argument's name).
func TestFlagsShowTheirType(t *testing.T) {
	for _, c := range commands() {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			if f.Value.Type() == "bool" && name != "" {
				t.Errorf("%s --%s is a boolean but help shows it taking %q", c.CommandPath(), f.Name, name)
			}
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage %q holds a backquote, which help shows as the argument's name", c.CommandPath(), f.Name, f.Usage)
			}
		})
	}
}

// TestImportHelpListsCSVColumns: `vpn users import --help` documents
// every CSV column the README's table lists (which the importer's tests
// hold to the columns it takes).
func TestImportHelpListsCSVColumns(t *testing.T) {
	data, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Importing users from CSV\n")
	if !ok {
		t.Fatal(`README has no "## Importing users from CSV" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var columns []string
	for _, line := range strings.Split(section, "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `") {
			for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(first, -1) {
				columns = append(columns, m[1])
			}
		}
	}
	if len(columns) < 5 {
		t.Fatalf("README lists CSV columns %v", columns)
	}
	h := &harness{t: t, env: map[string]string{}}
	help := h.must("users", "import", "--help").stdout
	for _, col := range columns {
		if !regexp.MustCompile(`(?m)^  (\S+, )*` + col + `\b`).MatchString(help) {
			t.Errorf("vpn users import --help does not document column %s", col)
		}
	}
}
