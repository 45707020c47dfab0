package importer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// maxArchive bounds what an archive may unpack to (a gzip bomb stops here).
const maxArchive = 64 << 20

// isTar reports a POSIX tar header ("ustar" at offset 257).
func isTar(data []byte) bool {
	return len(data) > 262 && bytes.Equal(data[257:262], []byte("ustar"))
}

// seedUser is the Rust predecessor's users/<uuid>/config.json.
type seedUser struct {
	ID         string  `json:"id"`
	Name       string  `json:"name"`
	Email      *string `json:"email"`
	CreatedAt  *string `json:"created_at"`
	LastActive *string `json:"last_active"`
	Status     string  `json:"status"`
	Protocol   string  `json:"protocol"`
	Config     struct {
		PrivateKey *string `json:"private_key"`
		Flow       *string `json:"flow"`
	} `json:"config"`
}

// seedProtocols maps the Rust tool's protocol names and aliases (lowercase)
// to what they become here.
var seedProtocols = map[string][]user.Protocol{
	"vless":        {user.VLESSReality},
	"outline":      {user.Shadowsocks2022},
	"shadowsocks":  {user.Shadowsocks2022},
	"httpproxy":    {user.HTTP},
	"http":         {user.HTTP},
	"http-proxy":   {user.HTTP},
	"socks5proxy":  {user.SOCKS5},
	"socks":        {user.SOCKS5},
	"socks5":       {user.SOCKS5},
	"socks5-proxy": {user.SOCKS5},
	"proxyserver":  {user.HTTP, user.SOCKS5},
	"proxy":        {user.HTTP, user.SOCKS5},
	"proxy-server": {user.HTTP, user.SOCKS5},
	"wireguard":    nil,
	"wg":           nil,
}

// DecodeSeedRust reads a tar archive (gzipped or not) of the Rust
// predecessor's user directories: every users/<uuid>/config.json in it is
// one record, in path order. Mapping, field by field:
//
//   - id → the user id (kept; it must be the directory's name)
//   - name, email → name, email; created_at → created_at;
//     last_active → usage.last_seen_at
//   - status Active → active; Inactive and Suspended → disabled;
//     Expired → expired
//   - protocol (any case, with aliases): vless → vless-reality, the VLESS
//     id being the user id as the Rust tool authenticated it (links keep
//     working); outline/shadowsocks → shadowsocks-2022 with a NEW key (the
//     old password was not a 2022 key; a warning says so); httpproxy and
//     socks5proxy → http and socks5, proxyserver → both, the password
//     being config.private_key as the Rust tool used it; wireguard is not
//     served yet and the record is refused
//   - config.server_host/server_port/sni were often placeholders and are
//     ignored, as are public_key, stats (never collected) and
//     connection.link files.
func DecodeSeedRust(data []byte) ([]Record, error) {
	files, err := untar(data)
	if err != nil {
		return nil, err
	}
	var names []string
	for name := range files {
		if path.Base(name) == "config.json" && path.Dir(name) != "." {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, errs.Field("data", "the archive holds no users/<uuid>/config.json")
	}
	if len(names) > MaxRecords {
		return nil, errs.Field("data", fmt.Sprintf("holds more than %d records", MaxRecords))
	}
	sort.Strings(names)
	out := make([]Record, 0, len(names))
	for i, name := range names {
		rec := Record{Pos: job.Problem{Record: i + 1, Source: name}}
		var s seedUser
		if decodeElement(&rec, files[name], &s) {
			seedRecord(&rec, s, path.Base(path.Dir(name)))
		}
		out = append(out, rec)
	}
	return out, nil
}

func untar(data []byte) (map[string][]byte, error) {
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, errs.Field("data", "is not a valid gzip archive: "+err.Error())
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(io.LimitReader(r, maxArchive+1))
	files := map[string][]byte{}
	total := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errs.Field("data", "is not a valid tar archive: "+err.Error())
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if !strings.HasSuffix(name, "/config.json") {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, 1<<20+1))
		if err != nil {
			return nil, errs.Field("data", "is not a valid tar archive: "+err.Error())
		}
		if len(b) > 1<<20 {
			return nil, errs.Field("data", name+" is over 1 MiB")
		}
		total += len(b)
		if total > maxArchive {
			return nil, errs.Field("data", fmt.Sprintf("unpacks to more than %d MiB", maxArchive>>20))
		}
		files[name] = b
	}
	return files, nil
}

func seedTime(s *string) (time.Time, bool) {
	if s == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	return t.UTC(), err == nil
}

func seedRecord(rec *Record, s seedUser, dir string) {
	u := &rec.User
	u.ID = strings.ToLower(s.ID)
	u.Name = s.Name
	rec.Pos.Name = s.Name
	if u.ID != strings.ToLower(dir) {
		rec.problem("id", fmt.Sprintf("must match its directory %q", truncate(dir)))
	}
	if s.Email != nil {
		u.Email = *s.Email
	}
	if t, ok := seedTime(s.CreatedAt); ok {
		u.CreatedAt = t
	} else if s.CreatedAt != nil {
		rec.problem("created_at", "must be an RFC 3339 time")
	}
	if t, ok := seedTime(s.LastActive); ok {
		u.Usage.LastSeenAt = t
	}
	switch s.Status {
	case "Active":
		u.Status = user.StatusActive
	case "Inactive", "Suspended":
		u.Status = user.StatusDisabled
	case "Expired":
		u.Status = user.StatusExpired
	default:
		rec.problem("status", fmt.Sprintf("unknown status %q (want Active, Inactive, Suspended or Expired)", truncate(s.Status)))
	}
	protos, known := seedProtocols[strings.ToLower(strings.TrimSpace(s.Protocol))]
	switch {
	case !known:
		rec.problem("protocol", fmt.Sprintf("unknown protocol %q", truncate(s.Protocol)))
		return
	case len(protos) == 0:
		rec.problem("protocol", "wireguard is not served yet")
		return
	}
	rec.Protocols = true
	u.Protocols = protos
	u.Placement = user.Placement{All: true}
	password := ""
	if s.Config.PrivateKey != nil {
		password = *s.Config.PrivateKey
	}
	for _, p := range protos {
		switch p {
		case user.VLESSReality:
			u.Credentials.VLESS = &user.VLESS{UUID: u.ID, Flow: user.FlowVision}
		case user.Shadowsocks2022:
			rec.warn("protocol", "Outline/Shadowsocks passwords are not 2022 keys: a new key is generated, clients need the new link")
		case user.HTTP, user.SOCKS5:
			if password == "" {
				rec.problem("config.private_key", "must be set: it is the proxy password")
				return
			}
			if len(password) > 128 {
				rec.problem("config.private_key", "must be at most 128 characters")
				return
			}
			acct := &user.Proxy{Password: password}
			if p == user.HTTP {
				u.Credentials.HTTP = acct
			} else {
				proxy := *acct
				u.Credentials.SOCKS5 = &proxy
			}
		}
	}
}
