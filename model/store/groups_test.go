package store_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// The reference shop's layout: 3 continuous features in (0, 1], then the
// one-hot groups gender (2), traffic source (5), time of day (3, optional:
// night sets none), weekday/weekend (2).
const shopDim = 15

// shopGroups are the one-hot groups of the reference shop's layout.
var shopGroups = []model.Group{
	{Features: []int{3, 4}}, {Features: []int{5, 6, 7, 8, 9}},
	{Features: []int{10, 11, 12}, Optional: true}, {Features: []int{13, 14}},
}

// newShopContext returns a random context of the reference shop's layout,
// one-hot in every group.
func newShopContext(rng *rand.Rand) []float64 {
	x := make([]float64, shopDim)
	x[0], x[1], x[2] = 1-rng.Float64(), 1-rng.Float64(), 1-rng.Float64()
	for _, g := range shopGroups {
		x[g.Features[rng.IntN(len(g.Features))]] = 1
	}
	return x
}

// TestOneHotFastPath scores a model with one-hot groups. Contexts that are
// one-hot in every group take the folded pattern columns, the others the
// general columns; both must equal the dense Go reference. To prove which
// path ran, a column that only the general path reads is then removed:
// one-hot contexts still work, the others fail with BADMODEL.
func TestOneHotFastPath(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(21, 22))
	const d, n = 15, 300
	m := &testModel{name: "shop", d: d, lambda: 1, byID: map[string]linucb.Params{}}
	w := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: 1}
	for a := 0; a < n; a++ {
		arm := linucb.NewArm(d, 1)
		for e := 0; e < rng.IntN(60); e++ {
			if err := arm.Update(newShopContext(rng), float64(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("dish-%d", a)
		m.ids, m.params, m.byID[id] = append(m.ids, id), append(m.params, p), p
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	meta, err := store.ReadMeta(ctx, c, m.name)
	if err != nil || fmt.Sprint(meta.Groups) != fmt.Sprint(shopGroups) {
		t.Fatalf("meta groups %v, %v", meta.Groups, err)
	}

	var oneHot, other [][]float64
	for i := 0; i < 20; i++ {
		x := newShopContext(rng)
		if i%4 == 0 {
			x[1] = 0 // a continuous feature at zero
		}
		if i%3 == 1 {
			x[10], x[11], x[12] = 0, 0, 0 // night: the optional group's "none"
		}
		oneHot = append(oneHot, x)
		y := newShopContext(rng)
		switch i % 3 {
		case 0:
			y[3], y[4] = 1, 1 // two genders
		case 1:
			y[13], y[14] = 0, 0 // no weekday flag
		default:
			y[11] = 0.5 // not exactly 1 (and two entries in the group)
		}
		other = append(other, y)
	}
	check := func(xs [][]float64, what string) {
		t.Helper()
		for i, x := range xs {
			q := store.Query{K: 5, Alpha: []float64{0.1, 1}[i%2], Context: x}
			if i%5 == 4 {
				q.Exclude = []string{m.reference(q)[0].ID}
			}
			got, err := store.Recommend(ctx, c, m.name, q)
			if err != nil {
				t.Fatalf("%s %d: %v", what, i, err)
			}
			sameItems(t, fmt.Sprintf("%s %d", what, i), got, m.reference(q))
		}
	}
	check(oneHot, "one-hot context")
	check(other, "other context")

	// The groups packed for the script (gmap, docs/FORMAT.md): their count,
	// then per group its size, 1 if optional and its features, LE uint16.
	root := store.RootKey(m.name)
	hget := func(f string) string {
		t.Helper()
		v, err := c.Do(ctx, c.B().Hget().Key(root).Field(f).Build()).ToString()
		if err != nil {
			t.Fatalf("HGET %s: %v", f, err)
		}
		return v
	}
	hset := func(f, v string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Hset().Key(root).FieldValue().FieldValue(f, v).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	packed := func(vs ...int) string {
		var b []byte
		for _, v := range vs {
			b = append(b, byte(v), byte(v>>8))
		}
		return string(b)
	}
	wantGmap := packed(4, 2, 0, 3, 4, 5, 0, 5, 6, 7, 8, 9, 3, 1, 10, 11, 12, 2, 0, 13, 14)
	if g := hget("gmap"); g != wantGmap {
		t.Fatalf("gmap %x, want %x", g, wantGmap)
	}
	// The script reads gmap, not the JSON: with the JSON spoilt, answers
	// are unchanged.
	groupsJSON := hget("groups")
	hset("groups", "not json")
	check(oneHot, "one-hot context, groups from gmap only")
	check(other, "other context, groups from gmap only")
	hset("groups", groupsJSON)
	// A model without gmap (created by an older writer) is read from the
	// JSON; the next write adds gmap.
	if err := c.Do(ctx, c.B().Hdel().Key(root).Field("gmap").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check(oneHot, "one-hot context without gmap")
	check(other, "other context without gmap")
	empty := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: 1}
	if _, err := empty.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	if g := hget("gmap"); g != wantGmap {
		t.Fatalf("gmap after a write %x, want %x", g, wantGmap)
	}
	// A malformed gmap is a BADMODEL for every context, never a wrong answer.
	for _, bad := range []string{"abc", packed(5, 2, 0, 3, 4), packed(1, 2, 0, 3, 15), packed(1, 2, 0, 3, 4, 7), packed(1, 9, 0, 3, 4), strings.Repeat("\x01\x00", 10000)} {
		hset("gmap", bad)
		for _, x := range [][]float64{oneHot[0], other[0]} {
			if _, err := store.Recommend(ctx, c, m.name, store.Query{K: 5, Alpha: 0.1, Context: x}); !errors.Is(err, store.ErrBadModel) {
				t.Fatalf("gmap %x: err %v, want ErrBadModel", bad, err)
			}
		}
	}
	hset("gmap", wantGmap)

	// gender × source: read by the general path only.
	var gxs []string
	for i := 3; i <= 4; i++ {
		for j := 5; j <= 9; j++ {
			gxs = append(gxs, fmt.Sprintf("q:0:%d:%d", i, j))
		}
	}
	if err := c.Do(ctx, c.B().Hdel().Key(root).Field(gxs...).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check(oneHot, "one-hot context without general group columns")
	for i, x := range other {
		if i%3 != 0 {
			continue
		}
		_, err := store.Recommend(ctx, c, m.name, store.Query{K: 5, Alpha: 0.1, Context: x})
		if !errors.Is(err, store.ErrBadModel) {
			t.Fatalf("other context %d without its columns: err %v, want ErrBadModel (the general path)", i, err)
		}
	}

	// Groups are part of the model's identity.
	arm := linucb.NewArm(d, 1)
	p, _ := arm.Solve()
	bad := store.Write{Model: m.name, Features: featureNames(d), Lambda: 1, Arms: []store.ArmWrite{{ID: "new", Arm: arm, Params: p}}}
	if _, err := bad.Apply(ctx, c); !errors.Is(err, store.ErrBadModel) {
		t.Fatalf("write without the model's groups: %v, want ErrBadModel", err)
	}
	for _, groups := range [][]model.Group{{{Features: []int{3, 3}}}, {{Features: []int{15}}}, {{}}, {{Features: []int{-1, 2}}}} {
		bad := store.Write{Model: "g2", Features: featureNames(d), Groups: groups, Lambda: 1, Arms: []store.ArmWrite{{ID: "new", Arm: arm, Params: p}}}
		if _, err := bad.Apply(ctx, c); !errors.Is(err, store.ErrBadArg) {
			t.Fatalf("groups %v: %v, want ErrBadArg", groups, err)
		}
	}
}

// TestPruningBound checks the scan's pruning of arms by the bound
// score <= mean + alpha |x| / sqrt(lambda) where it matters: fresh arms
// (A = lambda I) score exactly the bound and tie with one another, and when
// rewarded arms come first, fresh arms later in the scan win on their
// exploration bonus alone — pruned with a bound any smaller (without the
// lambda, say), they would be lost. Models of 10 trained and 30 fresh arms,
// interleaved or trained first, at two lambdas, are scored at alphas from 0
// to 3, with k reaching into the ties and with exclusions; the top-k must
// equal the reference, tie order included. Candidate lists (all arms in
// the scan's order, or 25 in a random order) prune by the same bound.
func TestPruningBound(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(31, 32))
	const d, n = shopDim, 40
	for _, lambda := range []float64{1, 0.25} {
		for _, first := range []bool{false, true} {
			m := &testModel{name: fmt.Sprintf("tight-%v-%v", lambda, first), d: d, lambda: lambda, byID: map[string]linucb.Params{}}
			w := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: lambda}
			for a := 0; a < n; a++ {
				arm := linucb.NewArm(d, lambda)
				trained, reward := a%4 == 1, float64(a%8/4)
				if first {
					trained, reward = a < 10, 1
				}
				for e := 0; trained && e < 30; e++ {
					if err := arm.Update(newShopContext(rng), reward); err != nil {
						t.Fatal(err)
					}
				}
				p, err := arm.Solve()
				if err != nil {
					t.Fatal(err)
				}
				id := fmt.Sprintf("p%02d", a) // product-id order is creation order
				m.ids, m.params, m.byID[id] = append(m.ids, id), append(m.params, p), p
				w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
			}
			if _, err := w.Apply(ctx, c); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 40; i++ {
				q := store.Query{K: []int{1, 5, 8, 12, 40, 34, 36}[i%7], Alpha: []float64{0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 3}[i%8], Context: newShopContext(rng)}
				switch i % 6 {
				case 0, 3:
					q.Exclude = []string{"p00", "p12", m.reference(q)[0].ID}
				case 1:
					q.Candidates = slices.Clone(m.ids) // the scan's order, through the candidate path
				case 4:
					// 25 in a random order, one twice, one excluded.
					perm := rng.Perm(n)[:25]
					for _, a := range perm {
						q.Candidates = append(q.Candidates, m.ids[a])
					}
					q.Candidates = append(q.Candidates, m.ids[perm[3]])
					q.Exclude = []string{m.ids[perm[7]]}
				}
				got, err := store.Recommend(ctx, c, m.name, q)
				if err != nil {
					t.Fatal(err)
				}
				sameItems(t, fmt.Sprintf("%s query %d (k %d, alpha %v)", m.name, i, q.K, q.Alpha), got, m.reference(q))
			}
		}
	}
}
