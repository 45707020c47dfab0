package user

import "time"

// CreateRequest is the body of a create request (subject.UsersCmd(
// subject.UsersCreate)); the reply is the created User.
type CreateRequest struct {
	// IdempotencyKey, when set, makes a retried create return the user the
	// first attempt created (for a day), instead of a name conflict.
	IdempotencyKey string `json:"idempotency_key,omitempty"`

	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Note  string `json:"note,omitempty"`
	// Status is active (the default), disabled or on_hold.
	Status     Status `json:"status,omitempty"`
	OnHoldDays int    `json:"on_hold_days,omitempty"`
	// Protocols defaults to every protocol.
	Protocols []Protocol `json:"protocols,omitempty"`
	// ShadowsocksMethod picks the user key length; the default is
	// 2022-blake3-aes-128-gcm.
	ShadowsocksMethod string `json:"shadowsocks_method,omitempty"`

	TrafficLimitBytes int64      `json:"traffic_limit_bytes,omitempty"`
	LimitReset        LimitReset `json:"limit_reset,omitempty"`
	ExpiresAt         time.Time  `json:"expires_at,omitzero"`
	// Placement defaults to every node.
	Placement *Placement `json:"placement,omitempty"`
}

// UpdateRequest changes the fields that are set (nil pointers are left
// alone). With ExpectedRevision set the update applies only to that
// revision and fails with a Conflict otherwise; without it, it applies to
// the latest revision. The reply is the updated User.
type UpdateRequest struct {
	ID               string `json:"id"`
	ExpectedRevision uint64 `json:"expected_revision,omitempty"`

	Name              *string     `json:"name,omitempty"`
	Email             *string     `json:"email,omitempty"`
	Note              *string     `json:"note,omitempty"`
	Status            *Status     `json:"status,omitempty"`
	OnHoldDays        *int        `json:"on_hold_days,omitempty"`
	Protocols         *[]Protocol `json:"protocols,omitempty"`
	TrafficLimitBytes *int64      `json:"traffic_limit_bytes,omitempty"`
	LimitReset        *LimitReset `json:"limit_reset,omitempty"`
	ExpiresAt         *time.Time  `json:"expires_at,omitempty"`
	// ClearExpiresAt removes the expiry (ExpiresAt must then be unset).
	ClearExpiresAt bool       `json:"clear_expires_at,omitempty"`
	Placement      *Placement `json:"placement,omitempty"`
}

// GetRequest names a user by ID or, when ID is empty, by Name (case does
// not matter). The reply is the User.
type GetRequest struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// RevisionRequest names a user and, optionally, the revision a change must
// apply to. Delete, disable, enable and reset_traffic take it.
type RevisionRequest struct {
	ID               string `json:"id"`
	ExpectedRevision uint64 `json:"expected_revision,omitempty"`
}

// DeleteResponse is the reply to a delete: the revision of the deletion.
type DeleteResponse struct {
	ID       string `json:"id"`
	Revision uint64 `json:"revision"`
}

// RotateRequest replaces the credentials of the listed protocols (all of
// the user's protocols when empty). The reply is the updated User.
type RotateRequest struct {
	ID               string     `json:"id"`
	ExpectedRevision uint64     `json:"expected_revision,omitempty"`
	Protocols        []Protocol `json:"protocols,omitempty"`
}

// Filter selects users for list and count. Empty fields select everything.
type Filter struct {
	Status     Status   `json:"status,omitempty"`
	Protocol   Protocol `json:"protocol,omitempty"`
	NamePrefix string   `json:"name_prefix,omitempty"`
	// Node selects users served by this node. NodeGroups are that node's
	// groups, for users placed by group: the users service fills them in
	// from the node's enrollment (whatever a caller sends is replaced).
	Node       string   `json:"node,omitempty"`
	NodeGroups []string `json:"node_groups,omitempty"`
}

// The sort orders of a list. A leading "-" reverses an order.
const (
	SortName      = "name"
	SortCreatedAt = "created_at"
)

// ListRequest is a page of users matching Filter in Sort order, starting
// after Cursor (from a previous reply). Paging is by key, so a page never
// repeats or skips users that did not change while paging.
type ListRequest struct {
	Filter
	// Sort is name (the default), created_at, -name or -created_at.
	Sort   string `json:"sort,omitempty"`
	Cursor string `json:"cursor,omitempty"`
	// Limit is the page size: default 100, at most 1000.
	Limit int `json:"limit,omitempty"`
}

// ListResponse is one page; NextCursor is empty on the last page.
type ListResponse struct {
	Users      []User `json:"users"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// CountResponse is the reply to a count request (a Filter).
type CountResponse struct {
	Count int `json:"count"`
}

// LinksRequest asks for a user's client links. HealthyNodes limits them to
// those nodes; null (absent) means every node, [] means none.
type LinksRequest struct {
	ID           string   `json:"id"`
	HealthyNodes []string `json:"healthy_nodes"`
}

// Link is one importable client link of a user on one server inbound.
type Link struct {
	Server   string   `json:"server"`
	Node     string   `json:"node"`
	Inbound  string   `json:"inbound"`
	Protocol Protocol `json:"protocol"`
	URL      string   `json:"url"`
}

// NoLink says why a user has no link for a protocol on a node.
type NoLink struct {
	Server   string   `json:"server,omitempty"`
	Node     string   `json:"node,omitempty"`
	Protocol Protocol `json:"protocol"`
	Reason   string   `json:"reason"`
}

// LinksResponse lists a user's links and, for every protocol and node
// that gives none, the reason.
type LinksResponse struct {
	Links   []Link   `json:"links"`
	Missing []NoLink `json:"missing,omitempty"`
}

// The subscription formats.
const (
	FormatBase64  = "base64"
	FormatClash   = "clash"
	FormatSingBox = "sing-box"
	// FormatOutline is the JSON Outline clients fetch for a dynamic
	// access key (ssconf://): the user's first Outline server.
	FormatOutline = "outline"
)

// SubscriptionRequest asks for a user's subscription body in Format
// (base64 by default); HealthyNodes as in LinksRequest.
type SubscriptionRequest struct {
	ID           string   `json:"id"`
	Format       string   `json:"format,omitempty"`
	HealthyNodes []string `json:"healthy_nodes"`
}

// SubscriptionResponse is a subscription body and its content type.
type SubscriptionResponse struct {
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	// Links is how many links the body holds.
	Links int `json:"links"`
}

// QRRequest asks for a QR code of Content or, when Content is empty, of
// the user's link on Server for Protocol.
type QRRequest struct {
	Content  string   `json:"content,omitempty"`
	ID       string   `json:"id,omitempty"`
	Server   string   `json:"server,omitempty"`
	Protocol Protocol `json:"protocol,omitempty"`
	// Size is the PNG's width in pixels (default 256, 64-1024).
	Size int `json:"size,omitempty"`
}

// QRResponse carries the code as a PNG and as text for a terminal.
type QRResponse struct {
	Content string `json:"content"`
	PNG     []byte `json:"png"`
	Text    string `json:"text"`
}
