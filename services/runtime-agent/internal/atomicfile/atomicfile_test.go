package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteReplacesAndLeavesNoTemp(t *testing.T) {
	for _, synced := range []bool{true, false} {
		dir := t.TempDir()
		path := filepath.Join(dir, "sub", "state.json")
		for _, content := range []string{"one", "two"} {
			if err := Write(path, []byte(content), 0o600, synced); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != content {
				t.Fatalf("read %q, %v; want %q", got, err, content)
			}
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("mode %v, %v", st.Mode(), err)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), TempPrefix) {
				t.Fatalf("temporary file %s left behind", e.Name())
			}
		}
	}
}

func TestWriteFailsCleanly(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(file, "x"), []byte("x"), 0o600, true); err == nil {
		t.Fatal("want an error writing under a regular file")
	}
}
