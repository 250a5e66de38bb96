package sidecar_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/sidecar"
)

// TestRecommendTiesVary: products of equal scores (eight unknown
// candidates, all scored as fresh arms) come in an order seeded by each
// decision's event id, so over 200 calls of the same request each of them
// comes first at least once (a fair order misses one with a chance of
// 8 (7/8)^200, about 2e-11; in candidate order, n1 always came first).
func TestRecommendTiesVary(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	x, err := spec.Reference().Encode(randomAttributes(rand.New(rand.NewPCG(5, 5))))
	if err != nil {
		t.Fatal(err)
	}
	dense, _ := json.Marshal(x)
	body := `{"context": ` + string(dense) + `, "k": 3, "candidates": ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"]}`
	first := map[string]int{}
	for i := 0; i < 200; i++ {
		status, m := f.post("/v1/recommend", body)
		if status != 200 {
			t.Fatalf("status %d %v", status, m)
		}
		got := items(t, m)
		if len(got) != 3 || got[0].Score != got[2].Score {
			t.Fatalf("reply %v: want three tied fresh arms", got)
		}
		first[got[0].ID]++
	}
	if len(first) != 8 {
		t.Fatalf("first places %v: want each of the 8 tied candidates at least once", first)
	}
}

// TestRecommendEventIDRetry: a request that gives its event id is answered
// with that id and, retried, with the same tie order; different ids order
// the ties differently at times. An event id too long, or with a control
// character, is a 400.
func TestRecommendEventIDRetry(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	x, err := spec.Reference().Encode(randomAttributes(rand.New(rand.NewPCG(6, 6))))
	if err != nil {
		t.Fatal(err)
	}
	dense, _ := json.Marshal(x)
	body := func(id string) string {
		return `{"context": ` + string(dense) + `, "k": 8, "candidates": ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"], "event_id": ` + strconv.Quote(id) + `}`
	}
	order := func(id string) string {
		t.Helper()
		status, m := f.post("/v1/recommend", body(id))
		if status != 200 || m["event_id"] != id {
			t.Fatalf("event id %q: status %d %v", id, status, m)
		}
		var ids []string
		for _, it := range items(t, m) {
			ids = append(ids, it.ID)
		}
		return strings.Join(ids, ",")
	}
	orders := map[string]bool{}
	for i := range 20 {
		id := fmt.Sprintf("visit-%d", i)
		first := order(id)
		for range 3 {
			if again := order(id); again != first {
				t.Fatalf("event id %s: %s, then %s", id, first, again)
			}
		}
		orders[first] = true
	}
	if len(orders) < 10 {
		t.Fatalf("20 event ids gave %d orders of 8 tied candidates", len(orders))
	}
	for _, id := range []string{strings.Repeat("x", sidecar.MaxEventID+1), "a\nb"} {
		if status, m := f.post("/v1/recommend", body(id)); status != 400 {
			t.Errorf("event id %q: status %d %v, want 400", id, status, m)
		}
	}
}
