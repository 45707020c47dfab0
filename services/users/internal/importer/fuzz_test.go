package importer_test

import (
	"os"
	"testing"

	"github.com/vpnfleet/vpnfleet/services/users/internal/importer"
	"github.com/vpnfleet/vpnfleet/shared/job"
)

// check is what every decoder promises on any input: no panic, an error or
// records numbered 1..n in order, each problem pointing at its record.
func check(t *testing.T, recs []importer.Record, err error) {
	if err != nil {
		return
	}
	for i, r := range recs {
		if r.Pos.Record != i+1 {
			t.Fatalf("record %d numbered %d", i+1, r.Pos.Record)
		}
		for _, p := range r.Problems {
			if p.Record != r.Pos.Record || p.Field == "" || p.Rule == "" {
				t.Fatalf("problem %+v of record %d", p, r.Pos.Record)
			}
		}
	}
}

func FuzzDecodeCSV(f *testing.F) {
	f.Add([]byte("name,email,protocols\nalice,a@b.c,vless-reality;http\n"))
	f.Add([]byte("name,traffic_limit_bytes,expires_at\nbob,x,2020-13-01\n\"carol\n"))
	f.Add([]byte("\xef\xbb\xbfname\nroot\n\n"))
	f.Add([]byte("name,id,vless_uuid,shadowsocks_key\na,b,c,d\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := importer.DecodeCSV(data)
		check(t, recs, err)
	})
}

func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`[{"name":"alice","protocols":["vless-reality"],"credentials":{"vless":{"uuid":"x"}}}]`))
	f.Add([]byte(`{"users":[{"name":1},"x",{"name":"b","placement":{"all":true}}],"next_cursor":""}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := importer.DecodeJSON(data)
		check(t, recs, err)
	})
}

func FuzzDecodeMarzban(f *testing.F) {
	if data, err := os.ReadFile("testdata/marzban/users.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"users":[{"username":"x","proxies":{"vmess":{"id":"y"}},"expire":-1,"on_hold_expire_duration":1e300}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := importer.DecodeMarzban(data)
		check(t, recs, err)
	})
}

func FuzzDecodeSeedRust(f *testing.F) {
	f.Add(tarDir(f, "testdata/seed-rust", false))
	f.Add(tarDir(f, "testdata/seed-rust", true))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := importer.DecodeSeedRust(data)
		check(t, recs, err)
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name\nalice\n"))
	f.Add([]byte(`[{"name":"alice"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, recs, err := importer.Decode(job.FormatAuto, data)
		check(t, recs, err)
	})
}
