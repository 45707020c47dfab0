// Package imagetar writes single-layer container images as tarballs that
// both Docker (`docker load`, docker-archive manifest.json) and containerd
// (Import, OCI image layout index.json) accept. It exists because hosts of
// this project may have no registry and no build tooling: the agent and its
// tests make a FROM-scratch image out of a few files (a static binary, a
// config) and load it through the runtimes' real import path.
//
// The tarball is an OCI image layout (oci-layout, index.json,
// blobs/sha256/...) that also carries a docker-archive manifest.json
// pointing at the same blobs, which is what Docker 25+ writes itself and
// what older engines (20.10 here) still read. Layers are uncompressed, so
// a layer's digest is also its diff id.
package imagetar

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
)

// File is one regular file of the image's only layer.
type File struct {
	// Path inside the image, e.g. "/bin/workload".
	Path string
	Mode int64
	Data []byte
}

// Image describes the image to write.
type Image struct {
	// Ref names the image, e.g. "docker.io/vpnfleet/workload:test". It
	// must carry a tag; a name without a registry host gets Docker Hub's,
	// as both engines do.
	Ref        string
	Files      []File
	Entrypoint []string
	Cmd        []string
	Env        []string
	Labels     map[string]string
	// Created stamps the config; zero keeps the output reproducible.
	Created time.Time
}

// Media types written (OCI, uncompressed layers).
const (
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type blob struct {
	data   []byte
	digest string
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{data: data, digest: "sha256:" + hex.EncodeToString(sum[:])}
}

func (b blob) path() string { return "blobs/sha256/" + strings.TrimPrefix(b.digest, "sha256:") }

func (b blob) desc(mediaType string) descriptor {
	return descriptor{MediaType: mediaType, Digest: b.digest, Size: int64(len(b.data))}
}

// Normalize returns ref in the fully qualified form containerd stores
// (docker.io/library/x:tag), the form Docker shows as the short one. It
// rejects references without a tag, since an untagged import is
// unaddressable.
func Normalize(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n@") {
		return "", errs.Field("ref", "must be a name:tag reference")
	}
	name, tag := ref, ""
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	if tag == "" || name == "" {
		return "", errs.Field("ref", "must carry a tag")
	}
	first, _, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		name = "docker.io/library/" + name
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		name = "docker.io/" + name
	}
	return name + ":" + tag, nil
}

// Write writes img to w as a tarball. Errors are errs.Invalid for a bad
// image description, or the writer's.
func Write(w io.Writer, img Image) error {
	ref, err := Normalize(img.Ref)
	if err != nil {
		return err
	}
	layer, err := layerTar(img.Files)
	if err != nil {
		return err
	}
	layerBlob := newBlob(layer)

	type imageConfig struct {
		Entrypoint []string          `json:"Entrypoint,omitempty"`
		Cmd        []string          `json:"Cmd,omitempty"`
		Env        []string          `json:"Env,omitempty"`
		Labels     map[string]string `json:"Labels,omitempty"`
	}
	cfg := struct {
		Created      *time.Time  `json:"created,omitempty"`
		Architecture string      `json:"architecture"`
		OS           string      `json:"os"`
		Config       imageConfig `json:"config"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}{
		Architecture: goruntime.GOARCH,
		OS:           "linux",
		Config:       imageConfig{Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: img.Env, Labels: img.Labels},
	}
	if !img.Created.IsZero() {
		c := img.Created.UTC()
		cfg.Created = &c
	}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{layerBlob.digest}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding image config: %w", err)
	}
	cfgBlob := newBlob(cfgJSON)

	mfst, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Config        descriptor   `json:"config"`
		Layers        []descriptor `json:"layers"`
	}{2, mediaManifest, cfgBlob.desc(mediaConfig), []descriptor{layerBlob.desc(mediaLayer)}})
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	mfstBlob := newBlob(mfst)
	mdesc := mfstBlob.desc(mediaManifest)
	mdesc.Annotations = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref[strings.LastIndex(ref, ":")+1:],
	}
	index, err := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, mediaIndex, []descriptor{mdesc}})
	if err != nil {
		return fmt.Errorf("encoding index: %w", err)
	}
	dockerManifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: cfgBlob.path(), RepoTags: []string{ref}, Layers: []string{layerBlob.path()}}})
	if err != nil {
		return fmt.Errorf("encoding docker manifest: %w", err)
	}

	tw := tar.NewWriter(w)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{layerBlob.path(), layerBlob.data},
		{cfgBlob.path(), cfgBlob.data},
		{mfstBlob.path(), mfstBlob.data},
		{"index.json", index},
		{"manifest.json", dockerManifest},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}); err != nil {
			return fmt.Errorf("writing %s: %w", dir, err)
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.data))}); err != nil {
			return fmt.Errorf("writing %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("writing %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("closing image tarball: %w", err)
	}
	return nil
}

// layerTar makes the layer: every file, with the directories above it.
func layerTar(files []File) ([]byte, error) {
	if len(files) == 0 {
		return nil, errs.Field("files", "at least one file")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		p := path.Clean("/" + f.Path)
		if p == "/" || f.Path == "" {
			return nil, errs.Field("files", fmt.Sprintf("bad path %q", f.Path))
		}
		rel := strings.TrimPrefix(p, "/")
		var parents []string
		for d := path.Dir(rel); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755}); err != nil {
				return nil, fmt.Errorf("writing layer dir %s: %w", parents[i], err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: mode, Size: int64(len(f.Data))}); err != nil {
			return nil, fmt.Errorf("writing layer file %s: %w", rel, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("writing layer file %s: %w", rel, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing layer: %w", err)
	}
	return buf.Bytes(), nil
}
