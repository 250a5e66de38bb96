package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// exactItems requires the same ids in the same order and scores within
// 1e-12 relative.
func exactItems(t *testing.T, what string, got, want []store.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		scale := math.Max(1e-300, math.Max(math.Abs(got[i].Score), math.Abs(want[i].Score)))
		if got[i].ID != want[i].ID || math.Abs(got[i].Score-want[i].Score) > 1e-12*scale {
			t.Fatalf("%s: item %d = %v, want %v\ngot  %v\nwant %v", what, i, got[i], want[i], got, want)
		}
	}
}

// copyQuery returns a random query for a model of dimension d with the
// given products: a context from ctxf, random k (beyond the catalogue at
// times), alpha (0 at times), candidates (unknown, repeated and excluded
// ones among them) and exclusions.
func copyQuery(rng *rand.Rand, ids []string, ctxf func() []float64) store.Query {
	q := store.Query{K: 1 + rng.IntN(12), Alpha: rng.Float64() * 2, Context: ctxf()}
	if rng.IntN(2) == 0 { // ties in the script's seeded order
		q.Seed = 1 + rng.Int64N(linucb.MaxSeed)
	}
	switch rng.IntN(6) {
	case 0:
		q.K = len(ids) + rng.IntN(5)
	case 1:
		q.Alpha = 0
	case 2:
		q.K = 40 + rng.IntN(40) // the script's heap beyond 32
	}
	pick := func() string {
		if rng.IntN(8) == 0 {
			return "unknown-" + strconv.Itoa(rng.IntN(5))
		}
		return ids[rng.IntN(len(ids))]
	}
	if rng.IntN(3) == 0 {
		q.Candidates = []string{}
		for range rng.IntN(60) {
			q.Candidates = append(q.Candidates, pick())
		}
	}
	if rng.IntN(2) == 0 {
		for range rng.IntN(20) {
			q.Exclude = append(q.Exclude, pick())
		}
	}
	return q
}

// compareCopy checks n random queries: the copy's answer must be the
// script's.
func compareCopy(t *testing.T, c rueidis.Client, cp *store.Copy, model string, ids []string, rng *rand.Rand, n int, ctxf func() []float64) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		q := copyQuery(rng, ids, ctxf)
		want, werr := store.Recommend(ctx, c, model, q)
		got, gerr := cp.Recommend(q)
		what := fmt.Sprintf("%s query %d (k=%d alpha=%v cands=%d excl=%d x=%v)", model, i, q.K, q.Alpha, len(q.Candidates), len(q.Exclude), q.Context)
		if werr != nil || gerr != nil {
			t.Fatalf("%s: copy %v, script %v", what, gerr, werr)
		}
		exactItems(t, what, got, want)
	}
}

// TestCopyMatchesScript loads copies of a model of the reference shop's
// layout (one-hot groups) and of a dense model without groups, and checks
// that they answer random queries exactly as recommend.lua: one-hot
// contexts (the folded rows), contexts that are not (the general layout),
// all-zero contexts, candidates, exclusions, k and alpha. Many arms are
// identical (no events, or the same events), so exact ties are common.
func TestCopyMatchesScript(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(19, 1))

	// The shop: every third arm has no events (a tie with the others
	// like it), every fifth the same two events.
	a := 0
	w := shopWrite(t, rng, "shop", "p%03d", 300, func() int {
		a++
		switch {
		case a%3 == 0:
			return 0
		case a%5 == 0:
			return 2
		}
		return rng.IntN(40)
	})
	twin := linucb.NewArm(shopDim, 1)
	tx := newShopContext(rng)
	_ = twin.Update(tx, 1)
	_ = twin.Update(tx, 0)
	tp, _ := twin.Solve()
	for i := range w.Arms {
		if i%5 == 4 {
			w.Arms[i].Arm, w.Arms[i].Params = twin, tp
		}
	}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	shopIDs := make([]string, len(w.Arms))
	for i, arm := range w.Arms {
		shopIDs[i] = arm.ID
	}
	shop, err := store.LoadCopy(ctx, c, "shop", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if shop.Products() != 300 {
		t.Fatalf("copy has %d products, want 300", shop.Products())
	}
	oneHot := func() []float64 { return newShopContext(rng) }
	compareCopy(t, c, shop, "shop", shopIDs, rng, 400, oneHot)
	other := func() []float64 {
		x := newShopContext(rng)
		switch rng.IntN(4) {
		case 0:
			x[3], x[4] = 1, 1 // two flags in a group
		case 1:
			x[5+rng.IntN(5)] = 0.5 // not a 1
			x[5], x[6], x[7], x[8], x[9] = 0, 0, 0, 0.5, 0
		case 2:
			x[13], x[14] = 0, 0 // none in a group that is not optional
		default:
			x[10], x[11], x[12] = 0, 0, 0 // night: none in the optional group (one-hot still)
		}
		return x
	}
	compareCopy(t, c, shop, "shop", shopIDs, rng, 300, other)
	compareCopy(t, c, shop, "shop", shopIDs, rng, 20, func() []float64 { return make([]float64, shopDim) })

	// Dense: no groups, contexts of every density.
	dense := writeRandomModel(t, c, "dense", 9, 250, 7)
	dcp, err := store.LoadCopy(ctx, c, "dense", 1000)
	if err != nil {
		t.Fatal(err)
	}
	compareCopy(t, c, dcp, "dense", dense.ids, rng, 500, func() []float64 { return randomContext(rng, 9, rng.Float64()) })
}

// TestCopyErrors checks that the copy refuses what the script refuses,
// with the same error text, and leaves a context of the wrong length to
// the script (ErrNotLocal); and that LoadCopy reports a missing or too
// large model.
func TestCopyErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(19, 2))
	m := writeRandomModel(t, c, "m", 4, 20, 3)
	cp, err := store.LoadCopy(ctx, c, "m", 20)
	if err != nil {
		t.Fatal(err)
	}
	x := randomContext(rng, 4, 1)
	for name, q := range map[string]store.Query{
		"k 0":           {K: 0, Alpha: 1, Context: x},
		"k -3":          {K: -3, Alpha: 1, Context: x},
		"alpha -1":      {K: 3, Alpha: -1, Context: x},
		"alpha NaN":     {K: 3, Alpha: math.NaN(), Context: x},
		"alpha +Inf":    {K: 3, Alpha: math.Inf(1), Context: x},
		"context NaN":   {K: 3, Alpha: 1, Context: []float64{1, math.NaN(), 0, 2}},
		"context -Inf":  {K: 3, Alpha: 1, Context: []float64{1, 0, math.Inf(-1), 2}},
		"overflow":      {K: 3, Alpha: 1, Context: []float64{1e200, 1e200, 0, 0}},
		"alpha too big": {K: 3, Alpha: 1e306, Context: []float64{1e3, 0, 0, 0}},
		"seed -1":       {K: 3, Alpha: 1, Context: x, Seed: -1},
		"seed too big":  {K: 3, Alpha: 1, Context: x, Seed: linucb.MaxSeed + 1},
	} {
		_, want := store.Recommend(ctx, c, "m", q)
		_, got := cp.Recommend(q)
		if !errors.Is(want, store.ErrBadArg) || got == nil || got.Error() != want.Error() || !errors.Is(got, store.ErrBadArg) {
			t.Errorf("%s: copy %v, script %v", name, got, want)
		}
	}
	for _, n := range []int{3, 5} {
		q := store.Query{K: 3, Alpha: 1, Context: make([]float64, n)}
		if _, err := cp.Recommend(q); !errors.Is(err, store.ErrNotLocal) {
			t.Errorf("context of %d values: %v, want ErrNotLocal", n, err)
		}
	}
	if _, err := store.LoadCopy(ctx, c, "m", 19); !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("LoadCopy of %d products with room for 19: %v, want ErrTooLarge", len(m.ids), err)
	}
	if _, err := store.LoadCopy(ctx, c, "nothing", 19); !errors.Is(err, store.ErrNoModel) {
		t.Errorf("LoadCopy of no model: %v, want ErrNoModel", err)
	}
}

// TestCopyRefresh writes to a model a copy holds and checks that Refresh
// reloads just the written products (and new ones) from the change record,
// the whole model when the record cannot tell, and that the copy then
// answers as the script.
func TestCopyRefresh(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(19, 3))
	w := shopWrite(t, rng, "shop", "p%03d", 120, func() int { return rng.IntN(30) })
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(w.Arms))
	vers := map[string]int64{}
	for i, a := range w.Arms {
		ids[i] = a.ID
		vers[a.ID] = 1
	}
	cp, err := store.LoadCopy(ctx, c, "shop", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || r != (store.Refreshed{}) {
		t.Fatalf("refresh of an unchanged model: %+v, %v", r, err)
	}
	oneHot := func() []float64 { return newShopContext(rng) }
	// write stores new states for the given products (new ones too).
	write := func(pick []string) {
		t.Helper()
		u := store.Write{Model: "shop", Features: featureNames(shopDim), Groups: shopGroups, Lambda: 1}
		for _, id := range pick {
			arm := linucb.NewArm(shopDim, 1)
			for range 5 + rng.IntN(30) {
				_ = arm.Update(newShopContext(rng), float64(rng.IntN(2)))
			}
			p, _ := arm.Solve()
			u.Arms = append(u.Arms, store.ArmWrite{ID: id, Version: vers[id], Arm: arm, Params: p})
		}
		got, err := u.Apply(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range pick {
			vers[id] = got[i]
		}
	}
	// The change record lists the indexes written.
	write([]string{"p007", "p003"})
	rec, err := c.Do(ctx, c.B().Hmget().Key(store.RootKey("shop")).Field("wseq", "chg:2").Build()).AsStrSlice()
	if err != nil || rec[0] != "2" || rec[1] != "2:3,7" {
		t.Fatalf("wseq and chg:2 after the second write: %q, %v; want 2 and 2:3,7", rec, err)
	}
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || r != (store.Refreshed{Arms: 2}) {
		t.Fatalf("refresh after a write of 2 products: %+v, %v", r, err)
	}
	compareCopy(t, c, cp, "shop", ids, rng, 100, oneHot)

	// Several writes, new products among them.
	write([]string{"p010", "p011"})
	write([]string{"new-a", "p011", "new-b"})
	write([]string{"p100"})
	ids = append(ids, "new-a", "new-b")
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || r != (store.Refreshed{Arms: 5}) {
		t.Fatalf("refresh after 3 writes of 5 products, 2 new: %+v, %v", r, err)
	}
	if cp.Products() != 122 {
		t.Fatalf("copy has %d products, want 122", cp.Products())
	}
	compareCopy(t, c, cp, "shop", ids, rng, 100, oneHot)

	// More writes than the ring holds: the whole model.
	for i := range store.ChangeRing + 1 {
		write([]string{ids[i]})
	}
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || r != (store.Refreshed{Full: true, Arms: 122}) {
		t.Fatalf("refresh after %d writes: %+v, %v", store.ChangeRing+1, r, err)
	}
	compareCopy(t, c, cp, "shop", ids, rng, 100, oneHot)

	// A writer without change records (updated_ms moves, wseq does not),
	// a damaged record and a lost wseq: the whole model.
	root := store.RootKey("shop")
	hset := func(f, v string) {
		if err := c.Do(ctx, c.B().Hset().Key(root).FieldValue().FieldValue(f, v).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	hset("updated_ms", "1")
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || !r.Full {
		t.Fatalf("refresh after updated_ms alone changed: %+v, %v", r, err)
	}
	write([]string{"p050"})
	seq, _ := c.Do(ctx, c.B().Hget().Key(root).Field("wseq").Build()).AsInt64()
	hset("chg:"+strconv.FormatInt(seq%store.ChangeRing, 10), "garbage")
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || !r.Full {
		t.Fatalf("refresh after a damaged record: %+v, %v", r, err)
	}
	if err := c.Do(ctx, c.B().Hdel().Key(root).Field("wseq").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	write([]string{"p051"}) // wseq restarts at 1, below the copy's
	if r, err := cp.Refresh(ctx, c, 1000); err != nil || !r.Full {
		t.Fatalf("refresh after wseq restarted: %+v, %v", r, err)
	}
	compareCopy(t, c, cp, "shop", ids, rng, 50, oneHot)

	// Too many products now, or none: the error, and the copy as it was.
	if _, err := cp.Refresh(ctx, c, 100); err != nil {
		t.Fatalf("refresh of an unchanged model with a smaller limit: %v", err)
	}
	write([]string{"new-c"})
	if _, err := cp.Refresh(ctx, c, 122); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("refresh past the limit: %v, want ErrTooLarge", err)
	}
	if err := c.Do(ctx, c.B().Del().Key(root).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Refresh(ctx, c, 1000); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("refresh of a deleted model: %v, want ErrNoModel", err)
	}
}
