package imagetar_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/runtime-agent/internal/imagetar"
	"github.com/vpnfleet/vpnfleet/shared/errs"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"alpine:3", "docker.io/library/alpine:3", nil},
		{"vpnfleet/xray:1.0", "docker.io/vpnfleet/xray:1.0", nil},
		{"ghcr.example/x/y:z", "ghcr.example/x/y:z", nil},
		{"localhost/x:1", "localhost/x:1", nil},
		{"localhost:5000/x:1", "localhost:5000/x:1", nil},
		{"untagged", "", errs.Invalid},
		{"host:5000/untagged", "", errs.Invalid},
		{"", "", errs.Invalid},
		{"with space:1", "", errs.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := imagetar.Normalize(tt.in)
			if !errors.Is(err, tt.err) && !(err == nil && tt.err == nil) {
				t.Fatalf("Normalize(%q) error %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestWriteLayout checks the tarball carries both an OCI layout and a
// docker-archive manifest pointing at blobs that exist, and a layer with
// the file and its parent directories.
func TestWriteLayout(t *testing.T) {
	var buf bytes.Buffer
	err := imagetar.Write(&buf, imagetar.Image{
		Ref:        "vpnfleet/test:1",
		Files:      []imagetar.File{{Path: "/usr/bin/app", Mode: 0o755, Data: []byte("#!")}},
		Entrypoint: []string{"/usr/bin/app"},
	})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	for _, name := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, ok := files[name]; !ok {
			t.Fatalf("tarball lacks %s", name)
		}
	}
	var mf []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &mf); err != nil || len(mf) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	if mf[0].RepoTags[0] != "docker.io/vpnfleet/test:1" {
		t.Errorf("RepoTags %v", mf[0].RepoTags)
	}
	for _, p := range append([]string{mf[0].Config}, mf[0].Layers...) {
		if _, ok := files[p]; !ok {
			t.Errorf("manifest names missing blob %s", p)
		}
	}
	var names []string
	lr := tar.NewReader(bytes.NewReader(files[mf[0].Layers[0]]))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{"usr/", "usr/bin/", "usr/bin/app"}
	if len(names) != len(want) {
		t.Fatalf("layer entries %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("layer entry %d = %q, want %q", i, names[i], want[i])
		}
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name string
		img  imagetar.Image
	}{
		{"no files", imagetar.Image{Ref: "a:1"}},
		{"untagged", imagetar.Image{Ref: "a", Files: []imagetar.File{{Path: "/x"}}}},
		{"root path", imagetar.Image{Ref: "a:1", Files: []imagetar.File{{Path: "/"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := imagetar.Write(io.Discard, tt.img); !errors.Is(err, errs.Invalid) {
				t.Fatalf("Write: %v, want Invalid", err)
			}
		})
	}
}
