package registry

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// maxProxyPassword bounds an imported proxy password.
const maxProxyPassword = 128

// Imported checks a user read from an import file against the same rules
// as a create and completes it as of now: a new id unless the file gave a
// valid one, the default status, protocols and placement, credentials the
// file gave kept (so existing links keep working) and the missing ones
// generated. Unlike a create it accepts any status (limited and expired
// users are settled again by enforcement) and an expiry in the past.
// protocolsGiven says whether the file named the protocols. Every rejected
// field is reported.
func Imported(u user.User, protocolsGiven bool, now time.Time) (user.User, []errs.FieldError) {
	var fe fields
	if u.ID == "" {
		id, err := newID()
		if err != nil {
			fe.add("id", err.Error())
			return u, fe
		}
		u.ID = id
	} else if !ValidID(u.ID) {
		fe.add("id", "must be a lowercase UUIDv4")
	}
	if rule := CheckName(u.Name); rule != "" {
		fe.add("name", rule)
	}
	checkEmail(&fe, u.Email)
	checkNote(&fe, u.Note)
	if u.Status == "" {
		u.Status = user.StatusActive
	}
	switch u.Status {
	case user.StatusActive, user.StatusDisabled, user.StatusLimited, user.StatusExpired:
	case user.StatusOnHold:
		if u.OnHoldDays < 1 {
			fe.add("on_hold_days", "must be at least 1 for an on_hold user")
		}
	default:
		fe.add("status", "must be active, disabled, limited, expired or on_hold")
	}
	checkOnHoldDays(&fe, u.OnHoldDays)
	if !protocolsGiven {
		u.Protocols = user.Protocols
	}
	u.Protocols = normProtocols(&fe, u.Protocols)
	checkLimit(&fe, u.TrafficLimitBytes)
	if u.LimitReset == "" {
		u.LimitReset = user.ResetNone
	}
	checkReset(&fe, u.LimitReset)
	if !u.Placement.All && len(u.Placement.Nodes) == 0 && len(u.Placement.Groups) == 0 {
		u.Placement.All = true
	}
	u.Placement = normPlacement(&fe, u.Placement)
	if u.Usage.UsedUp < 0 || u.Usage.UsedDown < 0 || u.Usage.LifetimeUp < 0 || u.Usage.LifetimeDown < 0 {
		fe.add("usage", "counters must not be negative")
	}
	checkCredentials(&fe, &u)
	if len(fe) > 0 {
		return u, fe
	}
	missing := missingCredentials(u)
	method := ""
	if u.Credentials.Shadowsocks != nil {
		method = u.Credentials.Shadowsocks.Method
	}
	creds := u.Credentials
	credentials.Drop(&creds, u.Protocols)
	if err := credentials.Generate(&creds, u.ID, method, missing); err != nil {
		fe.add("credentials", errs.Message(err))
		return u, fe
	}
	u.Credentials = creds
	for _, c := range []*user.Proxy{u.Credentials.SOCKS5, u.Credentials.HTTP} {
		if c != nil {
			c.Username = u.ID // agents name proxy accounts by user id
		}
	}
	if u.CreatedAt.IsZero() || u.CreatedAt.After(now) {
		u.CreatedAt = now
	}
	u.CreatedAt = u.CreatedAt.UTC()
	if !u.ExpiresAt.IsZero() {
		u.ExpiresAt = u.ExpiresAt.UTC()
	}
	u.UpdatedAt = now
	u.Usage.Windows = nil
	if u.Usage.ResetAt.IsZero() {
		u.Usage.ResetAt = now
	}
	u.Revision = 0
	return u, nil
}

// checkCredentials checks the credentials an import file gave.
func checkCredentials(fe *fields, u *user.User) {
	c := &u.Credentials
	if v := c.VLESS; v != nil && v.UUID != "" {
		if _, err := uuid.Parse(v.UUID); err != nil || len(v.UUID) != 36 {
			fe.add("credentials.vless.uuid", "must be a UUID")
		}
		if v.Flow == "" {
			v.Flow = user.FlowVision
		}
	} else {
		c.VLESS = nil
	}
	if s := c.Shadowsocks; s != nil && (s.Key != "" || s.Method != "") {
		if s.Method == "" {
			s.Method = credentials.DefaultMethod
		}
		n, ok := user.SS2022KeyLen(s.Method)
		if !ok {
			fe.add("credentials.shadowsocks.method", "must be 2022-blake3-aes-128-gcm, 2022-blake3-aes-256-gcm or 2022-blake3-chacha20-poly1305")
		} else if s.Key != "" {
			if b, err := base64.StdEncoding.DecodeString(s.Key); err != nil || len(b) != n {
				fe.add("credentials.shadowsocks.key", fmt.Sprintf("must be standard base64 of %d bytes for %s", n, s.Method))
			}
		}
	} else {
		c.Shadowsocks = nil
	}
	for _, p := range []struct {
		field string
		acct  **user.Proxy
	}{{"credentials.socks5.password", &c.SOCKS5}, {"credentials.http.password", &c.HTTP}} {
		a := *p.acct
		if a == nil || a.Password == "" {
			*p.acct = nil
			continue
		}
		if len(a.Password) > maxProxyPassword || !printable(a.Password) {
			fe.add(p.field, fmt.Sprintf("must be 1-%d printable ASCII characters", maxProxyPassword))
		}
	}
	// Keys of protocols this release does not know are dropped; an
	// Outline password follows the proxy passwords' rule.
	for p, k := range c.Keys {
		switch {
		case !protocol.Known(p):
			c.DropKey(p)
		case p == protocol.Outline && k.Password == "":
			c.DropKey(p)
		case p == protocol.Outline && (len(k.Password) > maxProxyPassword || !printable(k.Password)):
			fe.add("credentials.keys.outline.password", fmt.Sprintf("must be 1-%d printable ASCII characters", maxProxyPassword))
		}
	}
}

func printable(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) || r == ' ' {
			return false
		}
	}
	return true
}

// missingCredentials lists the user's protocols that have no credential.
func missingCredentials(u user.User) []user.Protocol {
	var out []user.Protocol
	c := u.Credentials
	for _, p := range u.Protocols {
		d, ok := protocol.Get(p)
		if !ok || !d.Has(c) || p == user.Shadowsocks2022 && c.Shadowsocks.Key == "" {
			out = append(out, p)
		}
	}
	return out
}
