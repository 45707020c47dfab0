package codecheck_test

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/codecheck"
)

// TestWorkspace runs the checks over every package of the workspace: each
// has a package doc comment, and every log key is a logkey constant.
func TestWorkspace(t *testing.T) {
	root, err := codecheck.WorkspaceRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	findings, err := codecheck.Check(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range findings {
		rel, err := filepath.Rel(root, f.Pos.Filename)
		if err == nil {
			f.Pos.Filename = rel
		}
		t.Error(f.String())
	}
}

// TestCheckFindsWhatItShould runs the checks over testdata/bad, which breaks
// each rule once per shape, and testdata/good, which breaks none: a check
// that finds nothing anywhere would pass TestWorkspace without checking.
func TestCheckFindsWhatItShould(t *testing.T) {
	tests := []struct {
		dir  string
		want []string // "file:line: rule prefix"
	}{
		{dir: "good"},
		{dir: "bad", want: []string{
			"bad/nodoc/nodoc.go:1: package nodoc has no package doc comment",
			"bad/bad.go:14: Info key \"user\"",
			"bad/bad.go:15: Info key \"node\"",
			"bad/bad.go:16: InfoContext key \"user\"",
			"bad/bad.go:17: Log key \"user\"",
			"bad/bad.go:18: With key \"component\"",
			"bad/bad.go:19: With key \"node\"",
			"bad/bad.go:20: Error key \"server\"",
			"bad/bad.go:21: slog.String key \"user\"",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			root := filepath.Join("testdata", tt.dir)
			findings, err := codecheck.Check(root)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range findings {
				rel, _ := filepath.Rel("testdata", f.Pos.Filename)
				got = append(got, rel+":"+strconv.Itoa(f.Pos.Line)+": "+f.Rule)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d findings, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for _, w := range tt.want {
				if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
					t.Errorf("missing finding %q in:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}
