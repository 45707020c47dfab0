package importer

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// CSVColumns are the columns a CSV file may have, in the order an export
// writes them. Only name is required; the header names the columns, in
// any order and any case.
var CSVColumns = []string{
	"name", "email", "note", "status", "protocols", "traffic_limit_bytes", "limit_reset",
	"expires_at", "on_hold_days", "nodes", "groups",
	"id", "vless_uuid", "shadowsocks_method", "shadowsocks_key", "socks5_password", "http_password",
}

// DecodeCSV reads a CSV file with a header row. Lists (protocols, nodes,
// groups) are separated by ";" or "|"; expires_at is RFC 3339 or a date
// (YYYY-MM-DD, midnight UTC); an empty cell leaves the field unset.
func DecodeCSV(data []byte) ([]Record, error) {
	if err := checkText(data); err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errs.Field("data", "is empty: want a header row naming the columns, then one user per row")
	}
	if err != nil {
		return nil, errs.Field("data", "line 1: "+csvError(err))
	}
	cols := make([]string, len(header))
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if !slices.Contains(CSVColumns, h) {
			return nil, errs.Field("data", fmt.Sprintf("line 1: unknown column %q (columns: %s)", truncate(h), strings.Join(CSVColumns, ", ")))
		}
		if slices.Contains(cols[:i], h) {
			return nil, errs.Field("data", fmt.Sprintf("line 1: column %q appears twice", h))
		}
		cols[i] = h
	}
	if !slices.Contains(cols, "name") {
		return nil, errs.Field("data", "line 1: the header has no name column")
	}
	var out []Record
	for n := 1; ; n++ {
		row, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		rec := Record{Pos: job.Problem{Record: n}}
		var pe *csv.ParseError
		if errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount) {
			rec.Pos.Line = pe.StartLine
			rec.problem("row", csvError(err))
			out = append(out, rec)
			continue
		}
		if err != nil {
			return nil, errs.Wrap(errs.Invalid, err, "reading csv")
		}
		rec.Pos.Line, _ = cr.FieldPos(0)
		if len(out) >= MaxRecords {
			return nil, errs.Field("data", fmt.Sprintf("holds more than %d records", MaxRecords))
		}
		if len(row) == 1 && strings.TrimSpace(row[0]) == "" && len(cols) > 1 {
			n--
			continue // a blank line
		}
		if len(row) != len(cols) {
			rec.problem("row", fmt.Sprintf("has %d fields, the header has %d", len(row), len(cols)))
			out = append(out, rec)
			continue
		}
		if !validUTF8(&rec, []byte(strings.Join(row, ","))) {
			out = append(out, rec)
			continue
		}
		csvRecord(&rec, cols, row)
		out = append(out, rec)
	}
	return out, nil
}

func csvError(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return "is not valid CSV: " + pe.Err.Error()
	}
	return "is not valid CSV: " + err.Error()
}

// splitList splits a list cell on ";", "|" or ",".
func splitList(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '|' || r == ',' || r == ' ' })
	return f
}

func csvRecord(rec *Record, cols, row []string) {
	u := &rec.User
	for i, col := range cols {
		v := strings.TrimSpace(row[i])
		if v == "" {
			continue
		}
		switch col {
		case "name":
			u.Name = v
			rec.Pos.Name = v
		case "email":
			u.Email = v
		case "note":
			u.Note = row[i]
		case "status":
			u.Status = user.Status(strings.ToLower(v))
		case "protocols":
			rec.Protocols = true
			for _, p := range splitList(v) {
				u.Protocols = append(u.Protocols, user.Protocol(strings.ToLower(p)))
			}
		case "traffic_limit_bytes":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				rec.problem(col, "must be a whole number of bytes")
				continue
			}
			u.TrafficLimitBytes = n
		case "limit_reset":
			u.LimitReset = user.LimitReset(strings.ToLower(v))
		case "expires_at":
			t, err := parseTime(v)
			if err != nil {
				rec.problem(col, "must be RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)")
				continue
			}
			u.ExpiresAt = t
		case "on_hold_days":
			n, err := strconv.Atoi(v)
			if err != nil {
				rec.problem(col, "must be a whole number of days")
				continue
			}
			u.OnHoldDays = n
		case "nodes":
			u.Placement.Nodes = splitList(v)
		case "groups":
			u.Placement.Groups = splitList(v)
		case "id":
			u.ID = strings.ToLower(v)
		case "vless_uuid":
			u.Credentials.VLESS = &user.VLESS{UUID: strings.ToLower(v), Flow: user.FlowVision}
		case "shadowsocks_method", "shadowsocks_key":
			if u.Credentials.Shadowsocks == nil {
				u.Credentials.Shadowsocks = &user.Shadowsocks{}
			}
			if col == "shadowsocks_method" {
				u.Credentials.Shadowsocks.Method = v
			} else {
				u.Credentials.Shadowsocks.Key = v
			}
		case "socks5_password":
			u.Credentials.SOCKS5 = &user.Proxy{Password: v}
		case "http_password":
			u.Credentials.HTTP = &user.Proxy{Password: v}
		}
	}
	if len(u.Placement.Nodes) == 0 && len(u.Placement.Groups) == 0 {
		u.Placement.All = true
	}
	if ss := u.Credentials.Shadowsocks; ss != nil && ss.Key != "" {
		if _, err := base64.StdEncoding.DecodeString(ss.Key); err != nil {
			rec.problem("shadowsocks_key", "must be standard base64")
		}
	}
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.DateOnly, s)
	return t.UTC(), err
}
