package logfile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/logfile"
	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/runtime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func read(t *testing.T, st *runtime.Stream[runtime.LogLine]) []string {
	t.Helper()
	var out []string
	for l := range st.C {
		out = append(out, l.Text)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	var big strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&big, "line %d with some padding to cross block boundaries\n", i)
	}
	tests := []struct {
		name    string
		content string
		tail    int
		want    []string
	}{
		{"all", "a\nb\nc\n", 0, []string{"a", "b", "c"}},
		{"last two", "a\nb\nc\n", 2, []string{"b", "c"}},
		{"more than there is", "a\nb\n", 10, []string{"a", "b"}},
		{"unterminated last line", "a\nb\nc", 2, []string{"b", "c"}},
		{"empty", "", 3, nil},
		{"blank lines kept", "a\n\nb\n", 2, []string{"", "b"}},
		{"crlf", "a\r\nb\r\n", 0, []string{"a", "b"}},
		{"large", big.String(), 2, []string{
			"line 4999 with some padding to cross block boundaries",
			"line 5000 with some padding to cross block boundaries",
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprint(i))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got := read(t, logfile.Stream(t.Context(), p, runtime.LogOptions{Tail: tt.tail}, func() bool { return false }))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMissingFileIsEmpty(t *testing.T) {
	st := logfile.Stream(t.Context(), filepath.Join(t.TempDir(), "none"), runtime.LogOptions{Follow: true}, func() bool { return false })
	if got := read(t, st); len(got) != 0 {
		t.Errorf("got %q from a missing file", got)
	}
}

// TestFollow appends while following and checks the new lines arrive and
// the stream ends once the writer is gone.
func TestFollow(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	f, err := logfile.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, "old")
	var alive atomic.Bool
	alive.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st := logfile.Stream(ctx, p, runtime.LogOptions{Tail: 1, Follow: true}, alive.Load)
	if l := <-st.C; l.Text != "old" {
		t.Fatalf("first line %q", l.Text)
	}
	fmt.Fprint(f, "new ")
	fmt.Fprintln(f, "line")
	if l := <-st.C; l.Text != "new line" {
		t.Fatalf("followed line %q", l.Text)
	}
	fmt.Fprint(f, "last words")
	alive.Store(false)
	if l := <-st.C; l.Text != "last words" {
		t.Fatalf("last line %q", l.Text)
	}
	if _, open := <-st.C; open {
		t.Fatal("stream still open after the writer stopped")
	}
}
