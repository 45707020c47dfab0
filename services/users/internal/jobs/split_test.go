package jobs

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vpnfleet/vpnfleet/shared/user"
)

// TestSplitBoundsBatchesByCountAndBytes: batches hold at most size items
// and at most maxBytes of encoded items, keep the input order, cover every
// item once, and an item larger than maxBytes travels alone.
func TestSplitBoundsBatchesByCountAndBytes(t *testing.T) {
	var items []Item
	for i := range 100 {
		note := strings.Repeat("n", 10*i)
		items = append(items, Item{N: i + 1, Action: actCreate, Name: "u", User: &user.User{Name: "u", Note: note}})
	}
	items = append(items, Item{N: 101, Action: actCreate, User: &user.User{Note: strings.Repeat("x", 5000)}})
	const size, maxBytes = 7, 3000
	parts, err := split(items, size, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	next := 1
	for _, p := range parts {
		total := 0
		for _, it := range p {
			if it.N != next {
				t.Fatalf("item %d where %d was due", it.N, next)
			}
			next++
			data, _ := json.Marshal(it)
			total += len(data) + 1
		}
		if len(p) > size {
			t.Fatalf("batch of %d items, want at most %d", len(p), size)
		}
		if total > maxBytes && len(p) > 1 {
			t.Fatalf("batch of %d bytes in %d items, want at most %d", total, len(p), maxBytes)
		}
	}
	if next != 102 {
		t.Fatalf("batches cover items up to %d, want 101", next-1)
	}
	if last := parts[len(parts)-1]; len(last) != 1 || last[0].N != 101 {
		t.Fatalf("the oversized item shares its batch: %d items", len(last))
	}
}
