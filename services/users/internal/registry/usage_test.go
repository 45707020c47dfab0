package registry_test

import (
	"errors"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/registry"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/usage"
)

func TestCheckRecord(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	lim := registry.Limits{MaxRate: 1 << 30} // 1 GiB/s
	good := func() usage.Record {
		return usage.Record{Node: "n1", Window: uint64(now.UnixMilli()), Start: now.Add(-10 * time.Second), End: now,
			Users: []usage.UserDelta{{User: "u", Uplink: 1 << 20, Downlink: 1 << 20}}}
	}
	tests := []struct {
		name   string
		change func(*usage.Record)
		subj   string
		field  string
	}{
		{"an agent's record", func(*usage.Record) {}, subject.Usage("n1"), ""},
		{"replayed after a day's outage", func(r *usage.Record) {
			r.Window -= uint64(24 * time.Hour / time.Millisecond)
			r.Start, r.End = r.Start.Add(-24*time.Hour), r.End.Add(-24*time.Hour)
		}, subject.Usage("n1"), ""},
		{"a clock a minute ahead", func(r *usage.Record) { r.End = r.End.Add(time.Minute); r.Window += 60_000 }, subject.Usage("n1"), ""},
		{"another node's record", func(*usage.Record) {}, subject.Usage("n2"), "node"},
		{"a window number far in the future", func(r *usage.Record) { r.Window = 1 << 62 }, subject.Usage("n1"), "window"},
		{"a window ending in the future", func(r *usage.Record) { r.End = now.Add(time.Hour) }, subject.Usage("n1"), "end"},
		{"a window older than the stream keeps", func(r *usage.Record) { r.Start = now.Add(-8 * 24 * time.Hour) }, subject.Usage("n1"), "start"},
		{"no bounds", func(r *usage.Record) { r.Start, r.End = time.Time{}, time.Time{} }, subject.Usage("n1"), "end"},
		{"end before start", func(r *usage.Record) { r.Start = now.Add(time.Second) }, subject.Usage("n1"), "end"},
		{"negative bytes", func(r *usage.Record) { r.Users[0].Uplink = -1 }, subject.Usage("n1"), "users[0]"},
		{"5 TB in ten seconds", func(r *usage.Record) { r.Users[0].Downlink = 5 << 40 }, subject.Usage("n1"), "users"},
		{"bytes that wrap int64", func(r *usage.Record) {
			r.Users = append(r.Users, usage.UserDelta{User: "v", Uplink: 1<<63 - 1}, usage.UserDelta{User: "w", Uplink: 1<<63 - 1})
		}, subject.Usage("n1"), "users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := good()
			tt.change(&rec)
			err := registry.CheckRecord(rec, tt.subj, now, lim)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, errs.Invalid) {
				t.Fatalf("err %v, want Invalid", err)
			}
			found := false
			for _, f := range errs.FieldsOf(err) {
				found = found || f.Field == tt.field
			}
			if !found {
				t.Fatalf("err %v does not name field %s", err, tt.field)
			}
		})
	}
}
