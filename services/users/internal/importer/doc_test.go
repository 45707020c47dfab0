package importer_test

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/importer"
)

// TestCSVColumnsAreDocumented: the README's table of CSV columns (which
// `vpn users import --help` repeats, checked by the CLI's tests) lists
// exactly the columns the importer takes.
func TestCSVColumnsAreDocumented(t *testing.T) {
	data, err := os.ReadFile("../../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Importing users from CSV\n")
	if !ok {
		t.Fatal(`README has no "## Importing users from CSV" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `") {
			for _, m := range regexp.MustCompile("`([a-z0-9_]+)`").FindAllStringSubmatch(first, -1) {
				documented = append(documented, m[1])
			}
		}
	}
	slices.Sort(documented)
	want := slices.Sorted(slices.Values(importer.CSVColumns))
	if !slices.Equal(documented, want) {
		t.Fatalf("README documents CSV columns %v, the importer takes %v", documented, want)
	}
}
