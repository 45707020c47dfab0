package importer

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/vpnfleet/vpnfleet/shared/job"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// marzbanUser is one user of Marzban's GET /api/users (v0.8), as far as an
// import reads it.
type marzbanUser struct {
	Username            string   `json:"username"`
	Status              string   `json:"status"`
	UsedTraffic         *int64   `json:"used_traffic"`
	LifetimeUsedTraffic *int64   `json:"lifetime_used_traffic"`
	CreatedAt           *string  `json:"created_at"`
	Expire              *int64   `json:"expire"`
	DataLimit           *int64   `json:"data_limit"`
	ResetStrategy       *string  `json:"data_limit_reset_strategy"`
	Note                *string  `json:"note"`
	OnlineAt            *string  `json:"online_at"`
	OnHoldDuration      *float64 `json:"on_hold_expire_duration"`
	Proxies             struct {
		VLESS *struct {
			ID   string `json:"id"`
			Flow string `json:"flow"`
		} `json:"vless"`
		VMess *struct {
			ID string `json:"id"`
		} `json:"vmess"`
		Trojan *struct {
			Password string `json:"password"`
		} `json:"trojan"`
		Shadowsocks *struct {
			Password string `json:"password"`
			Method   string `json:"method"`
		} `json:"shadowsocks"`
	} `json:"proxies"`
}

// marzbanTime parses Marzban's naive UTC timestamps (no zone).
func marzbanTime(s string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04:05.999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// DecodeMarzban reads the body of Marzban's GET /api/users, field by field:
//
//   - username → name; note → note; created_at → created_at;
//     online_at → usage.last_seen_at
//   - status: active, disabled, limited, expired and on_hold keep their
//     meaning (limited and expired are settled again by the registry)
//   - expire (Unix seconds, null = never) → expires_at
//   - data_limit (bytes, null = unlimited) → traffic_limit_bytes;
//     data_limit_reset_strategy no_reset → none, day/week/month/year as is
//   - used_traffic → usage.used_down, lifetime_used_traffic →
//     usage.lifetime_down (Marzban does not split up and down)
//   - on_hold_expire_duration (seconds) → on_hold_days, rounded up
//   - proxies.vless.id (+ flow) → the VLESS credential, kept so existing
//     links keep working; proxies.shadowsocks → a shadowsocks-2022
//     credential with a NEW key (Marzban's methods are pre-2022 and its
//     passwords are not 2022 keys; a warning says so); vmess and trojan
//     are not served here and are dropped with a warning
//   - inbounds, links, subscription_url, admin and the rest are ignored.
func DecodeMarzban(data []byte) ([]Record, error) {
	els, err := elements(data, "users")
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(els))
	for i, el := range els {
		rec := Record{Pos: job.Problem{Record: i + 1, Line: el.line}}
		var m marzbanUser
		if decodeElement(&rec, el.raw, &m) {
			marzbanRecord(&rec, m)
		}
		out = append(out, rec)
	}
	return out, nil
}

func marzbanRecord(rec *Record, m marzbanUser) {
	u := &rec.User
	u.Name = m.Username
	rec.Pos.Name = m.Username
	if m.Note != nil {
		u.Note = *m.Note
	}
	switch m.Status {
	case "active", "disabled", "limited", "expired", "on_hold":
		u.Status = user.Status(m.Status)
	case "":
		u.Status = user.StatusActive
	default:
		rec.problem("status", fmt.Sprintf("unknown Marzban status %q (want active, disabled, limited, expired or on_hold)", truncate(m.Status)))
	}
	if m.CreatedAt != nil {
		if t, ok := marzbanTime(*m.CreatedAt); ok {
			u.CreatedAt = t
		} else {
			rec.problem("created_at", "must be a timestamp like 2024-11-02T08:15:30")
		}
	}
	if m.OnlineAt != nil {
		if t, ok := marzbanTime(*m.OnlineAt); ok {
			u.Usage.LastSeenAt = t
		}
	}
	if m.Expire != nil && *m.Expire > 0 {
		if *m.Expire > 1<<40 {
			rec.problem("expire", "must be a Unix time in seconds")
		} else {
			u.ExpiresAt = time.Unix(*m.Expire, 0).UTC()
		}
	}
	if m.DataLimit != nil {
		u.TrafficLimitBytes = *m.DataLimit
	}
	if m.ResetStrategy != nil {
		switch s := *m.ResetStrategy; s {
		case "no_reset", "":
			u.LimitReset = user.ResetNone
		case "day", "week", "month", "year":
			u.LimitReset = user.LimitReset(s)
		default:
			rec.problem("data_limit_reset_strategy", fmt.Sprintf("unknown strategy %q (want no_reset, day, week, month or year)", truncate(s)))
		}
	}
	if m.UsedTraffic != nil && *m.UsedTraffic > 0 {
		u.Usage.UsedDown = *m.UsedTraffic
	}
	if m.LifetimeUsedTraffic != nil && *m.LifetimeUsedTraffic > 0 {
		u.Usage.LifetimeDown = *m.LifetimeUsedTraffic
	}
	if m.OnHoldDuration != nil && *m.OnHoldDuration > 0 {
		if *m.OnHoldDuration > 3650*86400 {
			rec.problem("on_hold_expire_duration", "must be at most 3650 days")
		} else {
			u.OnHoldDays = int(math.Ceil(*m.OnHoldDuration / 86400))
		}
	}
	p := m.Proxies
	rec.Protocols = true
	if p.VLESS != nil {
		u.Protocols = append(u.Protocols, user.VLESSReality)
		flow := p.VLESS.Flow
		if flow == "" {
			flow = user.FlowVision
		}
		u.Credentials.VLESS = &user.VLESS{UUID: strings.ToLower(p.VLESS.ID), Flow: flow}
		if flow != user.FlowVision {
			rec.warn("proxies.vless.flow", fmt.Sprintf("%q replaced by %s (REALITY inbounds here use Vision)", truncate(flow), user.FlowVision))
			u.Credentials.VLESS.Flow = user.FlowVision
		}
	}
	if p.Shadowsocks != nil {
		u.Protocols = append(u.Protocols, user.Shadowsocks2022)
		rec.warn("proxies.shadowsocks", fmt.Sprintf("method %q is not Shadowsocks-2022: a new 2022 key is generated, clients need the new link", truncate(p.Shadowsocks.Method)))
	}
	if p.VMess != nil {
		rec.warn("proxies.vmess", "VMess is not served here: dropped")
	}
	if p.Trojan != nil {
		rec.warn("proxies.trojan", "Trojan is not served here: dropped")
	}
	if len(u.Protocols) == 0 {
		rec.problem("proxies", "has no protocol served here (vless or shadowsocks)")
	}
	u.Placement = user.Placement{All: true}
}
