package loadtest

import (
	"math/rand/v2"
	"testing"

	"github.com/redbandit/redbandit/model"
)

func TestContextGen(t *testing.T) {
	if len(ShopFeatures()) != shopDim || shopDim != DefaultDim {
		t.Fatalf("shop layout: %d features, shopDim %d, DefaultDim %d", len(ShopFeatures()), shopDim, DefaultDim)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shop := newContextGen(shopDim, ShopGroups(), 3)
	x := make([]float64, shopDim)
	for range 1000 {
		shop.fill(rng, x)
		nz := 0
		for i, v := range x {
			if v != 0 {
				nz++
			}
			if v < 0 || v > 1 || (i >= 3 && v != 0 && v != 1) {
				t.Fatalf("shop context %v: value %d = %v", x, i, v)
			}
		}
		for _, g := range ShopGroups() {
			ones := 0
			for _, f := range g.Features {
				if x[f] == 1 {
					ones++
				}
			}
			if ones != 1 {
				t.Fatalf("shop context %v: group %v has %d ones", x, g.Features, ones)
			}
		}
		if nz != 7 {
			t.Fatalf("shop context %v has %d non-zero entries, want 7", x, nz)
		}
	}
	sparse := newContextGen(10, nil, 4)
	x = make([]float64, 10)
	hit := make([]int, 10)
	for range 1000 {
		sparse.fill(rng, x)
		nz := 0
		for i, v := range x {
			if v != 0 {
				nz++
				hit[i]++
			}
			if v < 0 || v > 1 {
				t.Fatalf("sparse context %v: value %v", x, v)
			}
		}
		if nz != 4 {
			t.Fatalf("sparse context %v has %d non-zero entries, want 4", x, nz)
		}
	}
	for i, h := range hit { // each feature is chosen 400 times in expectation
		if h < 300 || h > 500 {
			t.Errorf("feature %d non-zero in %d of 1000 contexts, want about 400", i, h)
		}
	}
	opt := newContextGen(3, []model.Group{{Features: []int{1, 2}, Optional: true}}, 0)
	x = make([]float64, 3)
	none := 0
	for range 300 {
		opt.fill(rng, x)
		if x[1]+x[2] == 0 {
			none++
		}
	}
	if none < 60 || none > 140 { // 1/3 expected
		t.Errorf("optional group empty in %d of 300 contexts, want about 100", none)
	}
}
