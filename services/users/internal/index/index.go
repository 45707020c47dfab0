// Package index keeps an in-memory, sorted view of every user, fed by a
// watch of the users bucket (a snapshot, then every change), so each
// replica answers list and count without reading the bucket and pages
// through 100,000 users in O(page) per page.
//
// Paging is by key: a cursor carries the sort key and id of the last user
// returned, and the next page starts strictly after it. Users that do not
// change while a client pages are listed exactly once, whatever else is
// created or deleted meanwhile.
package index

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/logkey"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

// Page sizes.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// ErrNotReady is returned while the initial snapshot is still loading.
var ErrNotReady = errors.New("user index is still loading")

// entry is one user with its precomputed sort keys.
type entry struct {
	u       *user.User
	lname   string
	created int64
}

func byName(a, b *entry) bool {
	if a.lname != b.lname {
		return a.lname < b.lname
	}
	return a.u.ID < b.u.ID
}

func byCreated(a, b *entry) bool {
	if a.created != b.created {
		return a.created < b.created
	}
	return a.u.ID < b.u.ID
}

// Index is the view. The zero value is not usable; call New.
type Index struct {
	mu   sync.RWMutex
	byID map[string]*entry
	// usage holds the counters of each user from the usage bucket (without
	// the per-node windows), merged into the users the index returns.
	usage     map[string]user.Usage
	byName    *btree.BTreeG[*entry]
	byCreated *btree.BTreeG[*entry]
	ready     chan struct{}
	readyOnce sync.Once
	// usageReady is closed once the usage bucket's snapshot is loaded.
	usageReady     chan struct{}
	usageReadyOnce sync.Once
	// onPut, when set, sees every user put (the limits enforcer schedules
	// the user's next expiry from it).
	onPut func(user.User)
}

// OnPut makes fn see every user put into the index from now on, after it
// is in. Call it before the index is filled.
func (x *Index) OnPut(fn func(user.User)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.onPut = fn
}

// New returns an empty index.
func New() *Index {
	return &Index{
		byID:      map[string]*entry{},
		usage:     map[string]user.Usage{},
		byName:    btree.NewG(32, byName),
		byCreated: btree.NewG(32, byCreated),
		ready:     make(chan struct{}),

		usageReady: make(chan struct{}),
	}
}

// Put inserts or replaces a user.
func (x *Index) Put(u user.User) {
	e := &entry{u: &u, lname: strings.ToLower(u.Name), created: u.CreatedAt.UnixNano()}
	x.mu.Lock()
	u.Usage = x.usage[u.ID]
	if old, ok := x.byID[u.ID]; ok {
		if old.u.Revision > u.Revision {
			x.mu.Unlock()
			return
		}
		x.byName.Delete(old)
		x.byCreated.Delete(old)
	}
	x.byID[u.ID] = e
	x.byName.ReplaceOrInsert(e)
	x.byCreated.ReplaceOrInsert(e)
	onPut := x.onPut
	x.mu.Unlock()
	if onPut != nil {
		onPut(u)
	}
}

// Remove drops a user.
func (x *Index) Remove(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.usage, id)
	if old, ok := x.byID[id]; ok {
		delete(x.byID, id)
		x.byName.Delete(old)
		x.byCreated.Delete(old)
	}
}

// PutUsage records a user's counters (from the usage bucket). They are
// kept apart from the user's record, which is desired state only.
func (x *Index) PutUsage(id string, c user.Usage) {
	c.Windows = nil
	x.mu.Lock()
	defer x.mu.Unlock()
	x.usage[id] = c
	if e, ok := x.byID[id]; ok {
		u := *e.u
		u.Usage = c
		e.u = &u
	}
}

// RemoveUsage forgets a user's counters.
func (x *Index) RemoveUsage(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.usage, id)
	if e, ok := x.byID[id]; ok {
		u := *e.u
		u.Usage = user.Usage{}
		e.u = &u
	}
}

// FollowUsage feeds the index's counters from a watch of the usage bucket
// until ctx ends.
func (x *Index) FollowUsage(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger) error {
	return follow(ctx, kv, func() { x.usageReadyOnce.Do(func() { close(x.usageReady) }) },
		func(e jetstream.KeyValueEntry) {
			var c user.Usage
			if err := json.Unmarshal(e.Value(), &c); err != nil {
				log.Error("indexing usage", logkey.User, e.Key(), logkey.Err, err)
				return
			}
			x.PutUsage(e.Key(), c)
		}, x.RemoveUsage)
}

// follow watches kv until ctx ends or the watch closes: put and del for
// each entry, loaded once the snapshot has been delivered.
func follow(ctx context.Context, kv jetstream.KeyValue, loaded func(), put func(jetstream.KeyValueEntry), del func(key string)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "watching %s", kv.Bucket())
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil
			case e == nil:
				loaded()
			case e.Operation() == jetstream.KeyValuePut:
				put(e)
			default:
				del(e.Key())
			}
		}
	}
}

// UsageReady is closed once the counters' snapshot is loaded.
func (x *Index) UsageReady() <-chan struct{} { return x.usageReady }

// Len is the number of users.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.byID)
}

// MarkReady says the initial snapshot is loaded.
func (x *Index) MarkReady() { x.readyOnce.Do(func() { close(x.ready) }) }

// Ready is closed once the initial snapshot is loaded.
func (x *Index) Ready() <-chan struct{} { return x.ready }

// Follow feeds the index from a watch of the users bucket until ctx ends:
// the current value of every user, then each change. decode turns a bucket
// entry into a user.
func (x *Index) Follow(ctx context.Context, kv jetstream.KeyValue, log *slog.Logger, decode func(jetstream.KeyValueEntry) (user.User, error)) error {
	start := time.Now()
	return follow(ctx, kv, func() {
		x.MarkReady()
		log.Info("user index loaded", logkey.Count, x.Len(), logkey.Duration, time.Since(start))
	}, func(e jetstream.KeyValueEntry) {
		u, err := decode(e)
		if err != nil {
			log.Error("indexing user", logkey.User, e.Key(), logkey.Err, err)
			return
		}
		x.Put(u)
	}, x.Remove)
}

// Match reports whether u passes filter f.
func Match(u *user.User, f user.Filter, lprefix string) bool {
	if f.Status != "" && u.Status != f.Status {
		return false
	}
	if f.Protocol != "" && !u.Has(f.Protocol) {
		return false
	}
	if lprefix != "" && !strings.HasPrefix(strings.ToLower(u.Name), lprefix) {
		return false
	}
	if f.Node != "" && !u.Placement.Serves(f.Node, f.NodeGroups) {
		return false
	}
	return true
}

// Count returns how many users pass f.
func (x *Index) Count(f user.Filter) int {
	lprefix := strings.ToLower(f.NamePrefix)
	x.mu.RLock()
	defer x.mu.RUnlock()
	if f.Status == "" && f.Protocol == "" && f.NamePrefix == "" && f.Node == "" {
		return len(x.byID)
	}
	n := 0
	for _, e := range x.byID {
		if Match(e.u, f, lprefix) {
			n++
		}
	}
	return n
}

// Each calls fn with every user, in no order, on a snapshot taken under
// the lock (fn runs without it).
func (x *Index) Each(fn func(u user.User) bool) {
	x.mu.RLock()
	all := make([]*user.User, 0, len(x.byID))
	for _, e := range x.byID {
		all = append(all, e.u)
	}
	x.mu.RUnlock()
	for _, u := range all {
		if !fn(*u) {
			return
		}
	}
}

// cursor is the position after the last user of a page.
type cursor struct {
	Sort    string `json:"s"`
	Name    string `json:"n,omitempty"`
	Created int64  `json:"c,omitempty"`
	ID      string `json:"i"`
}

func encodeCursor(c cursor) string {
	data, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeCursor(s, sort string) (cursor, error) {
	var c cursor
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(data, &c) != nil || c.ID == "" {
		return c, errs.Field("cursor", "must be a cursor from a previous page")
	}
	if c.Sort != sort {
		return c, errs.Field("cursor", fmt.Sprintf("belongs to sort %q, not %q", c.Sort, sort))
	}
	return c, nil
}

// List returns one page of users passing req.Filter in req.Sort order.
func (x *Index) List(req user.ListRequest) (user.ListResponse, error) {
	resp := user.ListResponse{Users: []user.User{}}
	next, err := x.walk(req, func(u *user.User) bool {
		resp.Users = append(resp.Users, *u)
		return true
	})
	resp.NextCursor = next
	return resp, err
}

// EncodedPage is a page of users already encoded, the wire form of
// user.ListResponse.
type EncodedPage struct {
	Users      []json.RawMessage `json:"users"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// ListEncoded is List with the page also cut at maxBytes of encoded users
// (at least one user), so that it fits in one bus message whatever the
// users' notes weigh: a cut page has a NextCursor like a full one.
func (x *Index) ListEncoded(req user.ListRequest, maxBytes int) (EncodedPage, error) {
	page := EncodedPage{Users: []json.RawMessage{}}
	size := 0
	var failed error
	next, err := x.walk(req, func(u *user.User) bool {
		data, err := json.Marshal(u)
		if err != nil {
			failed = err
			return false
		}
		if size += len(data) + 1; size > maxBytes && len(page.Users) > 0 {
			return false
		}
		page.Users = append(page.Users, data)
		return true
	})
	if failed != nil {
		return EncodedPage{}, errs.Wrap(errs.Internal, failed, "encoding a user")
	}
	page.NextCursor = next
	return page, err
}

// walk visits the users of one page of req in order, handing each to
// take until the page's limit or until take refuses one, and returns the
// cursor of the page after it ("" on the last page).
func (x *Index) walk(req user.ListRequest, take func(*user.User) bool) (string, error) {
	sort := req.Sort
	if sort == "" {
		sort = user.SortName
	}
	desc := strings.HasPrefix(sort, "-")
	field := strings.TrimPrefix(sort, "-")
	var fe []errs.FieldError
	if field != user.SortName && field != user.SortCreatedAt {
		fe = append(fe, errs.FieldError{Field: "sort", Rule: "must be name, created_at, -name or -created_at"})
	}
	limit := req.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	if limit < 0 || limit > MaxLimit {
		fe = append(fe, errs.FieldError{Field: "limit", Rule: fmt.Sprintf("must be 1-%d", MaxLimit)})
	}
	if req.Status != "" && !isStatus(req.Status) {
		fe = append(fe, errs.FieldError{Field: "status", Rule: "must be active, disabled, limited, expired or on_hold"})
	}
	if err := errs.Fields(fe...); err != nil {
		return "", err
	}
	var pivot *entry
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor, sort)
		if err != nil {
			return "", err
		}
		pivot = &entry{u: &user.User{ID: c.ID}, lname: c.Name, created: c.Created}
	}
	select {
	case <-x.ready:
	default:
		return "", errs.Wrap(errs.Unavailable, ErrNotReady, "listing users")
	}
	lprefix := strings.ToLower(req.NamePrefix)

	x.mu.RLock()
	defer x.mu.RUnlock()
	tree, less := x.byName, byName
	if field == user.SortCreatedAt {
		tree, less = x.byCreated, byCreated
	}
	n := 0
	var last *entry
	more := false
	visit := func(e *entry) bool {
		if pivot != nil && !(desc && less(e, pivot) || !desc && less(pivot, e)) {
			return true // the pivot itself
		}
		if field == user.SortName && !desc && lprefix != "" && e.lname > lprefix && !strings.HasPrefix(e.lname, lprefix) {
			return false // past every name with the prefix
		}
		if !Match(e.u, req.Filter, lprefix) {
			return true
		}
		if n == limit || !take(e.u) {
			more = true
			return false
		}
		n++
		last = e
		return true
	}
	switch {
	case pivot == nil && !desc && field == user.SortName && lprefix != "":
		tree.AscendGreaterOrEqual(&entry{u: &user.User{}, lname: lprefix}, visit)
	case pivot == nil && !desc:
		tree.Ascend(visit)
	case pivot == nil:
		tree.Descend(visit)
	case !desc:
		tree.AscendGreaterOrEqual(pivot, visit)
	default:
		tree.DescendLessOrEqual(pivot, visit)
	}
	if more && last != nil {
		return encodeCursor(cursor{Sort: sort, Name: last.lname, Created: last.created, ID: last.u.ID}), nil
	}
	return "", nil
}

func isStatus(s user.Status) bool {
	for _, k := range user.Statuses {
		if k == s {
			return true
		}
	}
	return false
}

// Get returns the user with id, as last seen by the watch.
func (x *Index) Get(id string) (user.User, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.byID[id]
	if !ok {
		return user.User{}, false
	}
	return *e.u, true
}

// ByName returns the user named name, in any case, as last seen.
func (x *Index) ByName(name string) (user.User, bool) {
	lname := strings.ToLower(name)
	x.mu.RLock()
	defer x.mu.RUnlock()
	var found *user.User
	x.byName.AscendGreaterOrEqual(&entry{u: &user.User{}, lname: lname}, func(e *entry) bool {
		if e.lname == lname {
			found = e.u
		}
		return false
	})
	if found == nil {
		return user.User{}, false
	}
	return *found, true
}
