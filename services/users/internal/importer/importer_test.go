package importer_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/importer"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// tarDir packs dir (testdata/seed-rust) as the CLI does, optionally
// gzipped.
func tarDir(t testing.TB, dir string, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestDetect(t *testing.T) {
	marzban, _ := os.ReadFile("testdata/marzban/users.json")
	tests := []struct {
		name string
		data []byte
		want job.Format
	}{
		{"csv", []byte("name\nalice\n"), job.FormatCSV},
		{"json array", []byte(` [{"name":"a"}]`), job.FormatJSON},
		{"json list reply", []byte(`{"users":[{"name":"a"}]}`), job.FormatJSON},
		{"marzban", marzban, job.FormatMarzban},
		{"tar", tarDir(t, "testdata/seed-rust", false), job.FormatSeedRust},
		{"tar.gz", tarDir(t, "testdata/seed-rust", true), job.FormatSeedRust},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := importer.Detect(tt.data); got != tt.want {
				t.Fatalf("Detect = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMarzbanSample(t *testing.T) {
	data, err := os.ReadFile("testdata/marzban/users.json")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := importer.DecodeMarzban(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	carol, dave, erin := recs[0], recs[1], recs[2]
	for _, r := range recs {
		if len(r.Problems) > 0 {
			t.Fatalf("record %d: %+v", r.Pos.Record, r.Problems)
		}
	}
	if carol.Pos.Line != 3 || dave.Pos.Line != 29 {
		t.Errorf("lines %d, %d; want 3, 29", carol.Pos.Line, dave.Pos.Line)
	}
	c := carol.User
	if c.Name != "carol" || c.Status != user.StatusActive || c.TrafficLimitBytes != 53687091200 || c.LimitReset != user.ResetMonth ||
		!c.ExpiresAt.Equal(time.Unix(1767225600, 0)) || c.Note != "plan: family" || c.Usage.UsedDown != 7340032000 ||
		c.Usage.LifetimeDown != 21474836480 || !c.CreatedAt.Equal(time.Date(2024, 11, 2, 8, 15, 30, 0, time.UTC)) {
		t.Errorf("carol %+v", c)
	}
	if c.Credentials.VLESS == nil || c.Credentials.VLESS.UUID != "3d2c1b0a-9f8e-4d7c-b6a5-4f3e2d1c0b9a" {
		t.Errorf("carol keeps her vless id: %+v", c.Credentials.VLESS)
	}
	if len(c.Protocols) != 2 || len(carol.Warnings) != 1 || carol.Warnings[0].Field != "proxies.shadowsocks" {
		t.Errorf("carol protocols %v warnings %+v", c.Protocols, carol.Warnings)
	}
	d := dave.User
	if d.Status != user.StatusOnHold || d.OnHoldDays != 7 || !d.ExpiresAt.IsZero() || d.LimitReset != user.ResetNone {
		t.Errorf("dave %+v", d)
	}
	e := erin.User
	if e.Status != user.StatusLimited || e.LimitReset != user.ResetWeek || len(e.Protocols) != 1 || e.Protocols[0] != user.Shadowsocks2022 {
		t.Errorf("erin %+v", e)
	}
}

func TestSeedRustSample(t *testing.T) {
	for _, gz := range []bool{false, true} {
		recs, err := importer.DecodeSeedRust(tarDir(t, "testdata/seed-rust", gz))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("%d records, want 2", len(recs))
		}
		alice, bob := recs[0].User, recs[1].User
		if len(recs[0].Problems)+len(recs[1].Problems) > 0 {
			t.Fatalf("problems %+v %+v", recs[0].Problems, recs[1].Problems)
		}
		if recs[0].Pos.Source != "users/6f1c2a9e-3b7d-4c1e-9a55-2d8e4f0b7c31/config.json" {
			t.Errorf("source %q", recs[0].Pos.Source)
		}
		if alice.ID != "6f1c2a9e-3b7d-4c1e-9a55-2d8e4f0b7c31" || alice.Name != "alice" || alice.Email != "alice@example.org" ||
			alice.Status != user.StatusActive || alice.Credentials.VLESS == nil || alice.Credentials.VLESS.UUID != alice.ID {
			t.Errorf("alice %+v", alice)
		}
		if bob.Name != "bob_office" || bob.Status != user.StatusDisabled || bob.Email != "" || len(bob.Protocols) != 1 || bob.Protocols[0] != user.Shadowsocks2022 {
			t.Errorf("bob %+v", bob)
		}
	}
}

func TestCSVProblemsCarryLines(t *testing.T) {
	data := []byte("name,traffic_limit_bytes,expires_at\n" +
		"alice,100,2030-01-02\n" +
		"bob,lots,\n" +
		"\"carol,1\n" + // an unterminated quote swallows the rest
		"dave,1,2030-01-02\n")
	recs, err := importer.DecodeCSV(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 3 {
		t.Fatalf("%d records", len(recs))
	}
	if len(recs[0].Problems) != 0 || !recs[0].User.ExpiresAt.Equal(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("alice %+v", recs[0])
	}
	if p := recs[1].Problems; len(p) != 1 || p[0].Line != 3 || p[0].Field != "traffic_limit_bytes" {
		t.Errorf("bob problems %+v", p)
	}
	if p := recs[2].Problems; len(p) != 1 || p[0].Line != 4 || p[0].Field != "row" {
		t.Errorf("carol problems %+v", p)
	}
}

func TestFileLevelErrors(t *testing.T) {
	tests := []struct {
		name   string
		format job.Format
		data   []byte
		want   string
	}{
		{"utf-16", job.FormatCSV, []byte{0xff, 0xfe, 'n', 0, 'a', 0}, "UTF-16"},
		{"unknown column", job.FormatCSV, []byte("name,colour\nalice,red\n"), "unknown column"},
		{"no name column", job.FormatCSV, []byte("email\na@b.c\n"), "no name column"},
		{"empty", job.FormatCSV, nil, "empty"},
		{"broken json", job.FormatJSON, []byte("[{\"name\":\"a\"},\n{"), "JSON"},
		{"json object without users", job.FormatJSON, []byte(`{"total":1}`), "without"},
		{"not a tar", job.FormatSeedRust, []byte("hello"), "tar"},
		{"unknown format", "xml", []byte("<a/>"), "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := importer.Decode(tt.format, tt.data)
			if !errors.Is(err, errs.Invalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want Invalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestBadUTF8IsARecordProblem(t *testing.T) {
	recs, err := importer.DecodeCSV([]byte("name,note\nalice,caf\xe9\nbob,ok\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || len(recs[0].Problems) != 1 || recs[0].Problems[0].Field != "encoding" || len(recs[1].Problems) != 0 {
		t.Fatalf("%+v", recs)
	}
}
