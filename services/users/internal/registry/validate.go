package registry

import (
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/vpnfleet/vpnfleet/services/users/internal/credentials"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/protocol"
	"github.com/vpnfleet/vpnfleet/shared/subject"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Rules, as reported in field errors.
const (
	NameRule     = "must be 3-32 characters of A-Z a-z 0-9 _ -"
	reservedRule = "is reserved"
)

// Limits on free-form input.
const (
	maxEmail          = 254
	maxNote           = 1024
	maxOnHoldDays     = 3650
	maxPlacementItems = 1000
	maxIdempotencyKey = 256
)

// reserved names cannot be taken, in any case.
var reserved = []string{"root", "admin", "system", "daemon", "nobody", "bin"}

// NameKey is the key of a name in the user_names bucket: names are unique
// regardless of case.
func NameKey(name string) string { return strings.ToLower(name) }

// CheckName returns the rule a name breaks, or "" when it is acceptable.
func CheckName(name string) string {
	if len(name) < 3 || len(name) > 32 {
		return NameRule
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return NameRule
		}
	}
	if slices.Contains(reserved, NameKey(name)) {
		return reservedRule
	}
	return ""
}

// ValidID reports whether id is a canonical lowercase UUIDv4, the only
// form user ids take.
func ValidID(id string) bool {
	u, err := uuid.Parse(id)
	return err == nil && len(id) == 36 && u.String() == id && u.Version() == 4
}

// fields collects field errors.
type fields []errs.FieldError

func (f *fields) add(field, rule string) { *f = append(*f, errs.FieldError{Field: field, Rule: rule}) }

func (f fields) err() error { return errs.Fields(f...) }

// CheckText returns the rule free text breaks (a note, an email address:
// anything stored as given and later printed on an operator's terminal),
// or "" when it is acceptable. Control characters (C0 such as ESC, NUL and
// newline, DEL, C1) would drive the terminal that prints them, and the
// bidirectional controls make text read as something else, so both are
// refused; any other printable Unicode is fine.
func CheckText(s string) string {
	for i, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) {
			return fmt.Sprintf("must not contain control characters (found %U at byte %d)", r, i)
		}
	}
	return ""
}

// isBidiControl reports whether r is one of the Unicode bidirectional
// formatting characters (marks, embeddings, overrides, isolates).
func isBidiControl(r rune) bool {
	return r == '\u061c' || r == '\u200e' || r == '\u200f' || r >= '\u202a' && r <= '\u202e' || r >= '\u2066' && r <= '\u2069'
}

func checkEmail(fe *fields, email string) {
	if email == "" {
		return
	}
	if rule := CheckText(email); rule != "" {
		fe.add("email", rule)
		return
	}
	if len(email) > maxEmail {
		fe.add("email", fmt.Sprintf("must be at most %d characters", maxEmail))
		return
	}
	a, err := mail.ParseAddress(email)
	if err != nil || a.Address != email || a.Name != "" {
		fe.add("email", "must be a plain address like name@example.com")
	}
}

func checkNote(fe *fields, note string) {
	if len(note) > maxNote {
		fe.add("note", fmt.Sprintf("must be at most %d bytes", maxNote))
	} else if !utf8.ValidString(note) {
		fe.add("note", "must be valid UTF-8")
	} else if rule := CheckText(note); rule != "" {
		fe.add("note", rule)
	}
}

// normProtocols checks a protocol list and returns it deduplicated in the
// canonical order.
func normProtocols(fe *fields, ps []user.Protocol) []user.Protocol {
	if len(ps) == 0 {
		fe.add("protocols", "must list at least one of "+protocol.List())
		return nil
	}
	var out []user.Protocol
	for _, known := range protocol.Names() {
		if slices.Contains(ps, known) {
			out = append(out, known)
		}
	}
	for _, p := range ps {
		if !protocol.Known(p) {
			fe.add("protocols", fmt.Sprintf("unknown protocol %q (want one of %s)", truncate(string(p)), protocol.List()))
			return nil
		}
	}
	return out
}

func checkLimit(fe *fields, limit int64) {
	if limit < 0 {
		fe.add("traffic_limit_bytes", "must not be negative (0 is unlimited)")
	}
}

func checkReset(fe *fields, r user.LimitReset) {
	if !slices.Contains(user.LimitResets, r) {
		fe.add("limit_reset", "must be none, day, week, month or year")
	}
}

func checkOnHoldDays(fe *fields, days int) {
	if days < 0 || days > maxOnHoldDays {
		fe.add("on_hold_days", fmt.Sprintf("must be 0-%d", maxOnHoldDays))
	}
}

// normPlacement checks a placement and returns it with sorted, unique lists.
func normPlacement(fe *fields, p user.Placement) user.Placement {
	if !p.All && len(p.Nodes) == 0 && len(p.Groups) == 0 {
		fe.add("placement", "must select all nodes, or list nodes or groups")
		return p
	}
	check := func(field string, ids []string) []string {
		if len(ids) > maxPlacementItems {
			fe.add(field, fmt.Sprintf("must list at most %d", maxPlacementItems))
			return nil
		}
		for _, id := range ids {
			if !subject.ValidToken(id) {
				fe.add(field, fmt.Sprintf("%q must be 1-128 characters of A-Z a-z 0-9 _ -", truncate(id)))
				return nil
			}
		}
		out := slices.Clone(ids)
		slices.Sort(out)
		return slices.Compact(out)
	}
	p.Nodes = check("placement.nodes", p.Nodes)
	p.Groups = check("placement.groups", p.Groups)
	return p
}

// truncate keeps echoed input short in error messages.
func truncate(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:40] + "..."
}

// NewUser validates a create request and builds the user it describes, with
// id and fresh credentials, as of now. Every rejected field is reported.
func NewUser(req user.CreateRequest, id string, now time.Time) (user.User, error) {
	var fe fields
	if rule := CheckName(req.Name); rule != "" {
		fe.add("name", rule)
	}
	checkEmail(&fe, req.Email)
	checkNote(&fe, req.Note)
	if len(req.IdempotencyKey) > maxIdempotencyKey {
		fe.add("idempotency_key", fmt.Sprintf("must be at most %d characters", maxIdempotencyKey))
	}
	status := req.Status
	if status == "" {
		status = user.StatusActive
	}
	switch status {
	case user.StatusActive, user.StatusDisabled:
	case user.StatusOnHold:
		if req.OnHoldDays < 1 {
			fe.add("on_hold_days", "must be at least 1 for an on_hold user")
		}
		if !req.ExpiresAt.IsZero() {
			fe.add("expires_at", "must be unset for an on_hold user (expiry starts at first use)")
		}
	default:
		fe.add("status", "must be active, disabled or on_hold")
	}
	checkOnHoldDays(&fe, req.OnHoldDays)
	protos := req.Protocols
	if protos == nil {
		protos = user.Protocols
	}
	protos = normProtocols(&fe, protos)
	method := req.ShadowsocksMethod
	if method == "" {
		method = credentials.DefaultMethod
	}
	if _, ok := user.SS2022KeyLen(method); !ok {
		fe.add("shadowsocks_method", "must be 2022-blake3-aes-128-gcm, 2022-blake3-aes-256-gcm or 2022-blake3-chacha20-poly1305")
	}
	checkLimit(&fe, req.TrafficLimitBytes)
	reset := req.LimitReset
	if reset == "" {
		reset = user.ResetNone
	}
	checkReset(&fe, reset)
	if !req.ExpiresAt.IsZero() && !req.ExpiresAt.After(now) {
		fe.add("expires_at", "must be in the future")
	}
	placement := user.Placement{All: true}
	if req.Placement != nil {
		placement = normPlacement(&fe, *req.Placement)
	}
	if err := fe.err(); err != nil {
		return user.User{}, err
	}
	u := user.User{
		ID:                id,
		Name:              req.Name,
		Email:             req.Email,
		Note:              req.Note,
		Status:            status,
		OnHoldDays:        req.OnHoldDays,
		Protocols:         protos,
		TrafficLimitBytes: req.TrafficLimitBytes,
		LimitReset:        reset,
		Placement:         placement,
		CreatedAt:         now,
		UpdatedAt:         now,
		Usage:             user.Usage{ResetAt: now},
	}
	if !req.ExpiresAt.IsZero() {
		u.ExpiresAt = req.ExpiresAt.UTC()
	}
	if err := credentials.Generate(&u.Credentials, id, method, protos); err != nil {
		return user.User{}, err
	}
	return u, nil
}

// CheckUpdate validates an update request on its own, before the user is
// read: every rejected field is reported.
func CheckUpdate(req user.UpdateRequest) error {
	var fe fields
	if !ValidID(req.ID) {
		fe.add("id", "must be a user id (UUIDv4)")
	}
	if req.Name != nil {
		if rule := CheckName(*req.Name); rule != "" {
			fe.add("name", rule)
		}
	}
	if req.Email != nil {
		checkEmail(&fe, *req.Email)
	}
	if req.Note != nil {
		checkNote(&fe, *req.Note)
	}
	if req.Status != nil {
		switch *req.Status {
		case user.StatusActive, user.StatusDisabled, user.StatusOnHold:
		default:
			fe.add("status", "must be active, disabled or on_hold (limited and expired are set by the registry)")
		}
	}
	if req.OnHoldDays != nil {
		checkOnHoldDays(&fe, *req.OnHoldDays)
	}
	if req.Protocols != nil {
		normProtocols(&fe, *req.Protocols)
	}
	if req.TrafficLimitBytes != nil {
		checkLimit(&fe, *req.TrafficLimitBytes)
	}
	if req.LimitReset != nil {
		checkReset(&fe, *req.LimitReset)
	}
	if req.ExpiresAt != nil && req.ClearExpiresAt {
		fe.add("clear_expires_at", "must not be set together with expires_at")
	}
	if req.Placement != nil {
		normPlacement(&fe, *req.Placement)
	}
	return fe.err()
}

// ApplyUpdate applies a checked update request to u as of now, generating
// credentials for protocols the user did not have. It replaces slices
// rather than changing them, so u may share them with another copy.
func ApplyUpdate(u *user.User, req user.UpdateRequest, now time.Time) error {
	if err := CheckUpdate(req); err != nil {
		return err
	}
	var fe fields
	if req.Name != nil {
		u.Name = *req.Name
	}
	if req.Email != nil {
		u.Email = *req.Email
	}
	if req.Note != nil {
		u.Note = *req.Note
	}
	if req.OnHoldDays != nil {
		u.OnHoldDays = *req.OnHoldDays
	}
	if req.Status != nil {
		u.Status = *req.Status
	}
	if req.TrafficLimitBytes != nil {
		u.TrafficLimitBytes = *req.TrafficLimitBytes
	}
	if req.LimitReset != nil {
		u.LimitReset = *req.LimitReset
	}
	if req.ExpiresAt != nil {
		u.ExpiresAt = req.ExpiresAt.UTC()
	}
	if req.ClearExpiresAt {
		u.ExpiresAt = time.Time{}
	}
	if req.Placement != nil {
		u.Placement = normPlacement(&fe, *req.Placement)
	}
	if req.Protocols != nil {
		protos := normProtocols(&fe, *req.Protocols)
		var added []user.Protocol
		for _, p := range protos {
			if !u.Has(p) {
				added = append(added, p)
			}
		}
		creds := u.Credentials
		credentials.Drop(&creds, protos)
		if err := credentials.Generate(&creds, u.ID, credentials.DefaultMethod, added); err != nil {
			return err
		}
		u.Credentials = creds
		u.Protocols = protos
	}
	if u.Status == user.StatusOnHold && u.OnHoldDays < 1 {
		fe.add("on_hold_days", "must be at least 1 for an on_hold user")
	}
	u.UpdatedAt = now
	return fe.err()
}
