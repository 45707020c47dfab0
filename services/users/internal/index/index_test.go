package index_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpnfleet/vpnfleet/services/users/internal/index"
	"github.com/vpnfleet/vpnfleet/shared/errs"
	"github.com/vpnfleet/vpnfleet/shared/user"
)

func mk(i int, status user.Status) user.User {
	return user.User{
		ID:        fmt.Sprintf("id-%05d", i),
		Name:      fmt.Sprintf("User-%05d", (i*7919)%100000),
		Status:    status,
		Protocols: []user.Protocol{user.VLESSReality},
		Placement: user.Placement{All: i%2 == 0, Groups: []string{"eu"}},
		CreatedAt: time.Unix(int64(i), 0),
		Revision:  1,
	}
}

// page lists every page and returns the ids in order.
func pageAll(t *testing.T, x *index.Index, req user.ListRequest, between func(page int)) []string {
	t.Helper()
	var ids []string
	for page := 0; ; page++ {
		resp, err := x.List(req)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range resp.Users {
			ids = append(ids, u.ID)
		}
		if resp.NextCursor == "" {
			return ids
		}
		req.Cursor = resp.NextCursor
		if between != nil {
			between(page)
		}
	}
}

func TestPagingIsStableWhileUsersChange(t *testing.T) {
	x := index.New()
	const n = 1000
	for i := range n {
		x.Put(mk(i, user.StatusActive))
	}
	x.MarkReady()
	for _, sort := range []string{"name", "-name", "created_at", "-created_at"} {
		t.Run(sort, func(t *testing.T) {
			y := index.New()
			for i := range n {
				y.Put(mk(i, user.StatusActive))
			}
			y.MarkReady()
			extra := n
			ids := pageAll(t, y, user.ListRequest{Sort: sort, Limit: 37}, func(page int) {
				// Between pages: create, delete and change other users.
				y.Put(mk(extra, user.StatusActive))
				extra++
				y.Remove(fmt.Sprintf("id-%05d", n-1-page))
			})
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					t.Fatalf("%s listed twice", id)
				}
				seen[id] = true
			}
			// Every user that existed throughout was listed.
			removed := map[string]bool{}
			for p := 0; p < n/37+1; p++ {
				removed[fmt.Sprintf("id-%05d", n-1-p)] = true
			}
			for i := range n {
				id := fmt.Sprintf("id-%05d", i)
				if !removed[id] && !seen[id] {
					t.Fatalf("%s never listed", id)
				}
			}
		})
	}
	// Pages come in order.
	ids := pageAll(t, x, user.ListRequest{Sort: "-created_at", Limit: 100}, nil)
	if len(ids) != n || ids[0] != "id-00999" || ids[n-1] != "id-00000" {
		t.Fatalf("-created_at order: %d ids, first %s last %s", len(ids), ids[0], ids[len(ids)-1])
	}
	resp, _ := x.List(user.ListRequest{Limit: 1000})
	names := make([]string, len(resp.Users))
	for i, u := range resp.Users {
		names[i] = strings.ToLower(u.Name)
	}
	if !slices.IsSorted(names) {
		t.Fatal("name order not sorted")
	}
}

func TestFiltersAndCount(t *testing.T) {
	x := index.New()
	for i := range 100 {
		st := user.StatusActive
		if i%4 == 0 {
			st = user.StatusLimited
		}
		x.Put(mk(i, st))
	}
	x.MarkReady()
	if got := x.Count(user.Filter{Status: user.StatusLimited}); got != 25 {
		t.Fatalf("limited count %d", got)
	}
	if got := x.Count(user.Filter{Node: "n1"}); got != 50 {
		t.Fatalf("node count %d (placement all)", got)
	}
	if got := x.Count(user.Filter{Node: "n1", NodeGroups: []string{"eu"}}); got != 100 {
		t.Fatalf("node+group count %d", got)
	}
	if got := x.Count(user.Filter{Protocol: user.HTTP}); got != 0 {
		t.Fatalf("http count %d", got)
	}
	prefix := "user-0"
	want := x.Count(user.Filter{NamePrefix: prefix})
	ids := pageAll(t, x, user.ListRequest{Filter: user.Filter{NamePrefix: "USER-0"}, Limit: 3}, nil)
	if len(ids) != want || want == 0 {
		t.Fatalf("prefix list %d, count %d", len(ids), want)
	}
	ids = pageAll(t, x, user.ListRequest{Filter: user.Filter{Status: user.StatusLimited}, Sort: "created_at", Limit: 10}, nil)
	if len(ids) != 25 {
		t.Fatalf("limited list %d", len(ids))
	}
}

func TestListRejectsBadInput(t *testing.T) {
	x := index.New()
	x.MarkReady()
	for _, req := range []user.ListRequest{
		{Sort: "email"}, {Limit: -1}, {Limit: 5000}, {Cursor: "!!"}, {Filter: user.Filter{Status: "gone"}},
	} {
		if _, err := x.List(req); !errors.Is(err, errs.Invalid) {
			t.Fatalf("%+v: %v, want Invalid", req, err)
		}
	}
	x.Put(mk(1, user.StatusActive))
	x.Put(mk(2, user.StatusActive))
	resp, _ := x.List(user.ListRequest{Limit: 1})
	if _, err := x.List(user.ListRequest{Sort: "created_at", Cursor: resp.NextCursor}); !errors.Is(err, errs.Invalid) {
		t.Fatalf("cursor of another sort: %v", err)
	}
	if _, err := index.New().List(user.ListRequest{}); !errors.Is(err, errs.Unavailable) {
		t.Fatalf("list before load: %v", err)
	}
}
