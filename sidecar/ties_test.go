package sidecar_test

import (
	"encoding/json"
	"math/rand/v2"
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
