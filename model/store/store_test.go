package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// testModel is a random model written to Redis together with the Go-side
// parameters of its arms, in arm-index order.
type testModel struct {
	name   string
	d      int
	lambda float64
	ids    []string
	params []linucb.Params
	byID   map[string]linucb.Params
}

func featureNames(d int) []string {
	f := make([]string, d)
	for i := range f {
		f[i] = "f" + strconv.Itoa(i)
	}
	return f
}

// writeRandomModel builds n arms of dimension d from random events (some arms
// get none and stay at the prior) and writes them, one block per call.
func writeRandomModel(t testing.TB, c rueidis.Client, name string, d, n int, seed uint64) *testModel {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, uint64(d*100000+n)))
	m := &testModel{name: name, d: d, lambda: 1, byID: map[string]linucb.Params{}}
	x := make([]float64, d)
	var batch []store.ArmWrite
	flush := func() {
		w := store.Write{Model: name, Features: featureNames(d), Lambda: m.lambda, Arms: batch}
		if _, err := w.Apply(ctx, c); err != nil {
			t.Fatalf("write %d arms: %v", len(batch), err)
		}
		// The arms a write creates take their indexes, which order equal
		// scores, in product-id order.
		slices.SortFunc(batch, func(a, b store.ArmWrite) int { return strings.Compare(a.ID, b.ID) })
		for _, a := range batch {
			m.ids = append(m.ids, a.ID)
			m.params = append(m.params, a.Params)
		}
		batch = batch[:0]
	}
	for a := 0; a < n; a++ {
		arm := linucb.NewArm(d, m.lambda)
		events := rng.IntN(3 * d)
		if a%7 == 3 {
			events = 0
		}
		for e := 0; e < events; e++ {
			for i := range x {
				x[i] = 0
				if rng.Float64() < 0.4 {
					x[i] = rng.Float64()*2 - 0.5
				}
			}
			if err := arm.Update(x, float64(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("p%d", a)
		m.byID[id] = p
		batch = append(batch, store.ArmWrite{ID: id, Arm: arm, Params: p})
		if len(batch) == store.DefaultBlock {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return m
}

// reference ranks like the script: the whole model in arm order, or the
// de-duplicated candidate list (unknown products as fresh arms), less the
// excluded products. Ties take the order of q.Seed over the arms' indexes,
// or the positions in the candidate list left.
func (m *testModel) reference(q store.Query) []store.Item {
	excluded := map[string]bool{}
	for _, id := range q.Exclude {
		excluded[id] = true
	}
	var ids []string
	if q.Candidates != nil {
		seen := map[string]bool{}
		for _, id := range q.Candidates {
			if !seen[id] && !excluded[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	} else {
		top := linucb.NewTopKSeeded(q.K, q.Seed)
		for i, id := range m.ids {
			if !excluded[id] {
				top.Offer(i, linucb.Score(q.Context, m.params[i], q.Alpha))
			}
		}
		var out []store.Item
		for _, r := range top.Ranked() {
			out = append(out, store.Item{ID: m.ids[r.Index], Score: r.Score})
		}
		return out
	}
	params := make([]linucb.Params, len(ids))
	for i, id := range ids {
		p, ok := m.byID[id]
		if !ok {
			p = linucb.Params{Theta: make([]float64, m.d), AInv: make([]float64, m.d*m.d)}
			for j := 0; j < m.d; j++ {
				p.AInv[j*m.d+j] = 1 / m.lambda
			}
		}
		params[i] = p
	}
	var out []store.Item
	for _, r := range linucb.RankSeeded(q.Context, params, q.Alpha, q.K, q.Seed) {
		out = append(out, store.Item{ID: ids[r.Index], Score: r.Score})
	}
	return out
}

// sameItems requires the same ids in the same order and scores within 1e-9
// relative.
func sameItems(t *testing.T, what string, got, want []store.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		scale := math.Max(1e-300, math.Max(math.Abs(got[i].Score), math.Abs(want[i].Score)))
		if got[i].ID != want[i].ID || math.Abs(got[i].Score-want[i].Score) > 1e-9*scale {
			t.Fatalf("%s: item %d = %v, want %v\ngot  %v\nwant %v", what, i, got[i], want[i], got, want)
		}
	}
}

func randomContext(rng *rand.Rand, d int, density float64) []float64 {
	x := make([]float64, d)
	for i := range x {
		if rng.Float64() < density {
			x[i] = rng.NormFloat64()
		}
	}
	return x
}

// TestRecommendMatchesReference checks the Lua top-k against the Go
// reference scorer over dimensions, model sizes, dense and sparse contexts,
// candidate and exclusion lists, and k beyond the number of arms.
func TestRecommendMatchesReference(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	if err := store.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, d := range []int{1, 4, 15, 64} {
		for _, n := range []int{1, 5, 200, 5000} {
			if testing.Short() && d*d*n > 15*15*5000 {
				continue
			}
			t.Run(fmt.Sprintf("d=%d/arms=%d", d, n), func(t *testing.T) {
				name := fmt.Sprintf("m%d_%d", d, n)
				m := writeRandomModel(t, c, name, d, n, 7)
				rng := rand.New(rand.NewPCG(11, uint64(d*n)))
				for trial := 0; trial < 12; trial++ {
					density := []float64{1, 0.3, 0.1}[trial%3]
					q := store.Query{K: []int{5, 1, n + 3}[trial%3], Alpha: []float64{0.1, 1, 0}[trial/3%3], Context: randomContext(rng, d, density)}
					switch trial / 4 {
					case 1: // candidates: some known, one unknown, one duplicate
						for j := 0; j < 6 && j < n; j++ {
							q.Candidates = append(q.Candidates, m.ids[rng.IntN(n)])
						}
						q.Candidates = append(q.Candidates, "never-seen", q.Candidates[0])
						q.Exclude = []string{q.Candidates[1]}
					case 2: // exclusions: the reference's own winners and an unknown id
						for _, it := range m.reference(q) {
							q.Exclude = append(q.Exclude, it.ID)
							if len(q.Exclude) == 2 {
								break
							}
						}
						q.Exclude = append(q.Exclude, "never-seen")
					}
					want := m.reference(q)
					for _, via := range []string{"evalsha", "fcall_ro"} {
						var got []store.Item
						var err error
						if via == "evalsha" {
							got, err = store.Recommend(ctx, c, name, q)
						} else {
							got, err = store.RecommendFCall(ctx, c, name, q)
						}
						if err != nil {
							t.Fatalf("%s trial %d: %v", via, trial, err)
						}
						sameItems(t, fmt.Sprintf("%s trial %d (k=%d density=%v cand=%d excl=%d)", via, trial, q.K, density, len(q.Candidates), len(q.Exclude)), got, want)
					}
				}
			})
		}
	}
}

func TestRecommendErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	m := writeRandomModel(t, c, "e", 3, 4, 1)
	ok := []string{"5", "0.1", "1", "0", "0.5"}
	cases := []struct {
		name string
		key  string
		args []string
		want error
	}{
		{"unknown model", store.RootKey("nope"), ok, store.ErrNoModel},
		{"too few context values", store.RootKey(m.name), []string{"5", "0.1", "1", "0"}, store.ErrBadArg},
		{"too many context values", store.RootKey(m.name), append(slices.Clone(ok), "2"), store.ErrBadArg},
		{"non-numeric value", store.RootKey(m.name), []string{"5", "0.1", "1", "x", "0"}, store.ErrBadArg},
		{"NaN", store.RootKey(m.name), []string{"5", "0.1", "1", "nan", "0"}, store.ErrBadArg},
		{"Inf", store.RootKey(m.name), []string{"5", "0.1", "1", "inf", "0"}, store.ErrBadArg},
		{"-Inf", store.RootKey(m.name), []string{"5", "0.1", "-inf", "0", "0"}, store.ErrBadArg},
		{"k = 0", store.RootKey(m.name), []string{"0", "0.1", "1", "0", "0"}, store.ErrBadArg},
		{"k fractional", store.RootKey(m.name), []string{"1.5", "0.1", "1", "0", "0"}, store.ErrBadArg},
		{"negative alpha", store.RootKey(m.name), []string{"5", "-1", "1", "0", "0"}, store.ErrBadArg},
		{"context overflowing", store.RootKey(m.name), []string{"5", "0.1", "1e200", "0", "0"}, store.ErrBadArg},
		{"context overflowing in sum", store.RootKey(m.name), []string{"5", "0.1", "1e154", "1e154", "0"}, store.ErrBadArg},
		{"alpha overflowing", store.RootKey(m.name), []string{"5", "1e308", "100", "0", "0"}, store.ErrBadArg},
		{"unknown option", store.RootKey(m.name), append(slices.Clone(ok), "LIMIT", "1", "x"), store.ErrBadArg},
		{"short candidate list", store.RootKey(m.name), append(slices.Clone(ok), "CANDIDATES", "3", "p1"), store.ErrBadArg},
		{"twice", store.RootKey(m.name), append(slices.Clone(ok), "EXCLUDE", "0", "exclude", "0"), store.ErrBadArg},
		{"option without a count", store.RootKey(m.name), append(slices.Clone(ok), "EXCLUDE"), store.ErrBadArg},
		{"no arguments", store.RootKey(m.name), nil, store.ErrBadArg},
		{"negative seed", store.RootKey(m.name), append(slices.Clone(ok), "SEED", "-1"), store.ErrBadArg},
		{"seed 2^31-1", store.RootKey(m.name), append(slices.Clone(ok), "seed", "2147483647"), store.ErrBadArg},
		{"fractional seed", store.RootKey(m.name), append(slices.Clone(ok), "SEED", "1.5"), store.ErrBadArg},
		{"seed without a value", store.RootKey(m.name), append(slices.Clone(ok), "SEED"), store.ErrBadArg},
		{"seed twice", store.RootKey(m.name), append(slices.Clone(ok), "SEED", "1", "SEED", "2"), store.ErrBadArg},
	}
	for _, tc := range cases {
		for _, via := range []string{"EVALSHA", "FCALL_RO"} {
			var res rueidis.RedisResult
			if via == "EVALSHA" {
				res = c.Do(ctx, c.B().Eval().Script(lua.RecommendSource()).Numkeys(1).Key(tc.key).Arg(tc.args...).Build())
			} else {
				if err := store.Load(ctx, c); err != nil {
					t.Fatal(err)
				}
				res = c.Do(ctx, c.B().FcallRo().Function("rb_recommend").Numkeys(1).Key(tc.key).Arg(tc.args...).Build())
			}
			err := store.ScriptError(res.Error())
			if !errors.Is(err, tc.want) {
				t.Errorf("%s %s: error %v, want %v", via, tc.name, err, tc.want)
				continue
			}
			if msg := err.Error(); len(msg) < 20 || containsAny(msg, "user_script", "stack traceback", "@user_function") {
				t.Errorf("%s %s: unclear error %q", via, tc.name, msg)
			}
		}
	}

	// Large contexts short of overflowing are answered, like the reference.
	for _, x := range [][]float64{{1e100, 0, -3e99}, {0, 1e-300, 0}} {
		q := store.Query{K: 4, Alpha: 0.1, Context: x}
		got, err := store.Recommend(ctx, c, m.name, q)
		if err != nil {
			t.Fatalf("context %v: %v", x, err)
		}
		sameItems(t, fmt.Sprintf("context %v", x), got, m.reference(q))
	}

	// A malformed model: a column of the wrong length.
	srv2 := redistest.Start(t)
	c2 := srv2.Client()
	writeRandomModel(t, c2, "bad", 2, 3, 1)
	if err := c2.Do(ctx, c2.B().Hset().Key(store.RootKey("bad")).FieldValue().FieldValue("t:0:0", "short").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Recommend(ctx, c2, "bad", store.Query{K: 1, Alpha: 0.1, Context: []float64{1, 1}}); !errors.Is(err, store.ErrBadModel) {
		t.Fatalf("malformed column: %v, want ErrBadModel", err)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestLongLists: option lists and answers longer than Lua can unpack in one
// call (about 8,000 values) — 9,000 exclusions, 9,000 candidates, k beyond
// 4,000 — are read in slices and answer like the reference; k beyond the
// script's sorted list (a heap) keeps ties in arm or candidate order.
func TestLongLists(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	m := writeRandomModel(t, c, "long", 1, 4500, 3)
	var many []string
	for i := range 9000 {
		many = append(many, fmt.Sprintf("p%d", i)) // p4500 and beyond are unknown
	}
	for _, q := range []store.Query{
		{K: 5, Alpha: 0.1, Context: []float64{1}, Exclude: many[:4490]},
		{K: 5, Alpha: 0.1, Context: []float64{1}, Exclude: many},
		{K: 7, Alpha: 0.5, Context: []float64{-1}, Candidates: many},
		{K: 4400, Alpha: 0.1, Context: []float64{0.5}},
		{K: 9000, Alpha: 0.1, Context: []float64{0.5}, Exclude: many[:7]},
		// Every score 0: the top 50 (beyond the sorted list, in the heap)
		// are the first arms in index order, past the excluded ones.
		{K: 50, Alpha: 0.1, Context: []float64{0}},
		{K: 50, Alpha: 1, Context: []float64{0}, Exclude: many[3:40]},
		{K: 40, Alpha: 1, Context: []float64{0}, Candidates: many[100:200]},
	} {
		got, err := store.Recommend(ctx, c, m.name, q)
		if err != nil {
			t.Fatalf("k=%d, %d candidates, %d exclusions: %v", q.K, len(q.Candidates), len(q.Exclude), err)
		}
		sameItems(t, fmt.Sprintf("k=%d, %d candidates, %d exclusions", q.K, len(q.Candidates), len(q.Exclude)), got, m.reference(q))
	}
}

// TestTopKTies: beyond the script's sorted list (k > 32, a heap), arms that
// tie keep arm order when better ones arrive later and evict some of them:
// 40 fresh arms (all scoring α|x|/√λ) come first, 10 rewarded arms after;
// the top 35 are the 10 rewarded arms and the first 25 fresh ones.
func TestTopKTies(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	m := &testModel{name: "ties", d: 1, lambda: 1, byID: map[string]linucb.Params{}}
	w := store.Write{Model: m.name, Features: featureNames(1), Lambda: 1}
	for a := range 50 {
		arm := linucb.NewArm(1, 1)
		for e := 0; a >= 40 && e < a-35; e++ {
			if err := arm.Update([]float64{1}, 1); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("a%02d", a) // product-id order is index order
		m.ids, m.params, m.byID[id] = append(m.ids, id), append(m.params, p), p
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{35, 45} {
		q := store.Query{K: k, Alpha: 0.1, Context: []float64{1}}
		got, err := store.Recommend(ctx, c, m.name, q)
		if err != nil {
			t.Fatal(err)
		}
		want := m.reference(q)
		if want[10].ID != "a00" || want[k-1].ID != fmt.Sprintf("a%02d", k-11) {
			t.Fatalf("k=%d: the reference is not the case tested: %v", k, want)
		}
		sameItems(t, fmt.Sprintf("k=%d", k), got, want)
	}
}
