package linucb

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"sort"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// relClose reports whether got and want agree to tol relative to the larger
// magnitude (absolute near zero).
func relClose(got, want, tol float64) bool {
	scale := math.Max(1, math.Max(math.Abs(got), math.Abs(want)))
	return math.Abs(got-want) <= tol*scale
}

// TestSolveMatchesRidge compares θ and A⁻¹ with the closed-form ridge
// regression θ = (λI + XᵀX)⁻¹ Xᵀr computed by an LU solve of the dense normal
// equations (an independent code path from the incremental update + Cholesky).
func TestSolveMatchesRidge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, d := range []int{1, 4, 15, 64} {
		for _, lambda := range []float64{1, 0.25} {
			n := 3 * d
			x := mat.NewDense(n, d, nil)
			r := mat.NewVecDense(n, nil)
			arm := NewArm(d, lambda)
			for t0 := 0; t0 < n; t0++ {
				row := make([]float64, d)
				for j := range row {
					if rng.Float64() < 0.5 {
						row[j] = rng.NormFloat64()
					}
				}
				reward := float64(rng.IntN(2))
				x.SetRow(t0, row)
				r.SetVec(t0, reward)
				if err := arm.Update(row, reward); err != nil {
					t.Fatal(err)
				}
			}
			var gram mat.Dense
			gram.Mul(x.T(), x)
			for i := 0; i < d; i++ {
				gram.Set(i, i, gram.At(i, i)+lambda)
			}
			var xtr mat.VecDense
			xtr.MulVec(x.T(), r)
			var want mat.VecDense
			if err := want.SolveVec(&gram, &xtr); err != nil {
				t.Fatal(err)
			}
			var wantInv mat.Dense
			if err := wantInv.Inverse(&gram); err != nil {
				t.Fatal(err)
			}

			p, err := arm.Solve()
			if err != nil {
				t.Fatalf("d=%d: %v", d, err)
			}
			if arm.N() != int64(n) {
				t.Fatalf("n = %d, want %d", arm.N(), n)
			}
			if want := mat.Sum(r); arm.Rewards() != want { // sums of 0/1: exact
				t.Fatalf("rewards = %v, want %v", arm.Rewards(), want)
			}
			const tol = 1e-9
			for i := 0; i < d; i++ {
				if !relClose(p.Theta[i], want.AtVec(i), tol) {
					t.Fatalf("d=%d λ=%v θ[%d] = %v, want %v", d, lambda, i, p.Theta[i], want.AtVec(i))
				}
				for j := 0; j < d; j++ {
					if !relClose(p.AInv[i*d+j], wantInv.At(i, j), tol) {
						t.Fatalf("d=%d A⁻¹[%d,%d] = %v, want %v", d, i, j, p.AInv[i*d+j], wantInv.At(i, j))
					}
					if !relClose(arm.A()[i*d+j], gram.At(i, j), 1e-12) {
						t.Fatalf("d=%d A[%d,%d] = %v, want %v", d, i, j, arm.A()[i*d+j], gram.At(i, j))
					}
				}
			}
		}
	}
}

func TestScoreMatchesDefinition(t *testing.T) {
	// A = diag(2, 4), b = (1, 2): θ = (0.5, 0.5), A⁻¹ = diag(0.5, 0.25).
	arm, err := Restore(2, []float64{2, 0, 0, 4}, []float64{1, 2}, 3, 1.5)
	if err != nil {
		t.Fatal(err)
	}
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	x := []float64{1, 2}
	want := 0.5*1 + 0.5*2 + 0.1*math.Sqrt(0.5*1+0.25*4)
	if got := Score(x, p, 0.1); !relClose(got, want, 1e-15) {
		t.Fatalf("score = %v, want %v", got, want)
	}
}

func TestNotPositiveDefinite(t *testing.T) {
	arm, err := Restore(2, []float64{1, 2, 2, 1}, []float64{0, 0}, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := arm.Solve(); !errors.Is(err, ErrNotPositiveDefinite) {
		t.Fatalf("Solve of an indefinite A: err = %v, want ErrNotPositiveDefinite", err)
	}
}

func TestUpdateRejectsNonFinite(t *testing.T) {
	arm := NewArm(3, 1)
	for _, c := range []struct {
		x []float64
		r float64
	}{
		{[]float64{1, math.NaN(), 0}, 1},
		{[]float64{1, 0, math.Inf(1)}, 0},
		{[]float64{1, 0, 0}, math.NaN()},
		{[]float64{1, 0, 1.0000001e100}, 1}, // x_i·x_j could overflow A
		{[]float64{-1e200, 0, 0}, 0},
	} {
		if err := arm.Update(c.x, c.r); !errors.Is(err, ErrNonFinite) {
			t.Fatalf("Update(%v, %v) = %v, want ErrNonFinite", c.x, c.r, err)
		}
	}
	// The same through the path for more than 64 features.
	big := NewArm(65, 1)
	x := make([]float64, 65)
	x[64] = -2e100
	if err := big.Update(x, 1); !errors.Is(err, ErrNonFinite) || big.N() != 0 {
		t.Fatalf("Update of 65 features with %v: %v", x[64], err)
	}
	// MaxAbsContext itself is folded, and A stays finite.
	edge := NewArm(2, 1)
	for range 1000 {
		if err := edge.Update([]float64{MaxAbsContext, -MaxAbsContext}, 1); err != nil {
			t.Fatal(err)
		}
	}
	if !finite(edge.A()) {
		t.Fatalf("A overflowed: %v", edge.A())
	}
	if arm.N() != 0 || arm.A()[0] != 1 || arm.B()[0] != 0 {
		t.Fatalf("a rejected update changed the arm: n=%d A00=%v b0=%v", arm.N(), arm.A()[0], arm.B()[0])
	}
	if _, err := Restore(1, []float64{math.NaN()}, []float64{0}, 0, 0); !errors.Is(err, ErrNonFinite) {
		t.Fatalf("Restore with NaN: %v", err)
	}
}

func TestShapeMisusePanics(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Fatalf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("NewArm(0)", func() { NewArm(0, 1) })
	mustPanic("NewArm λ=0", func() { NewArm(2, 0) })
	mustPanic("Update short x", func() { _ = NewArm(2, 1).Update([]float64{1}, 1) })
	mustPanic("Add other dimension", func() { NewArm(2, 1).Add(NewDelta(3)) })
	mustPanic("Merge other dimension", func() { NewDelta(2).Merge(NewDelta(3)) })
	mustPanic("NewDelta(0)", func() { NewDelta(0) })
	mustPanic("Delta.Update short x", func() { _ = NewDelta(2).Update([]float64{1}, 1) })
	mustPanic("Score short x", func() { Score([]float64{1}, Params{Theta: []float64{0, 0}, AInv: make([]float64, 4)}, 1) })
}

func TestUpdateAllocatesNothing(t *testing.T) {
	arm, delta := NewArm(15, 1), NewDelta(15)
	x := make([]float64, 15)
	for i := range x {
		x[i] = float64(i%3) * 0.5
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = arm.Update(x, 1) }); allocs != 0 {
		t.Fatalf("Arm.Update allocates %v times per call", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = delta.Update(x, 1) }); allocs != 0 {
		t.Fatalf("Delta.Update allocates %v times per call", allocs)
	}
	if err := delta.Update([]float64{0, math.NaN(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 1); !errors.Is(err, ErrNonFinite) || delta.N() != 101 {
		t.Fatalf("Delta.Update(NaN) = %v with %d events, want ErrNonFinite and 101", err, delta.N())
	}
}

// TestUpdateMatchesOuterProducts checks the sparse update against
// A = λI + Σ x xᵀ and b = Σ r x summed densely, for sparse and dense
// contexts, with d on both sides of the update's stack buffer (64); and an
// arm with two deltas added (one of them merged from two) likewise.
func TestUpdateMatchesOuterProducts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, d := range []int{1, 15, 64, 70} {
		arm := NewArm(d, 2)
		halves := [3]*Delta{NewDelta(d), NewDelta(d), NewDelta(d)}
		wantA, wantB := make([]float64, d*d), make([]float64, d)
		for i := 0; i < d; i++ {
			wantA[i*d+i] = 2
		}
		var wantR float64
		for ev := 0; ev < 300; ev++ {
			x := make([]float64, d)
			for i := range x {
				if ev%3 == 0 || rng.IntN(4) == 0 { // a third dense, the rest ~25% non-zero
					x[i] = rng.NormFloat64()
				}
			}
			r := float64(rng.IntN(2))
			if err := arm.Update(x, r); err != nil {
				t.Fatal(err)
			}
			_ = halves[ev%3].Update(x, r)
			for i := range x {
				for j := range x {
					wantA[i*d+j] += x[i] * x[j]
				}
				wantB[i] += r * x[i]
			}
			wantR += r
		}
		sum := NewArm(d, 2)
		halves[1].Merge(halves[2])
		sum.Add(halves[0])
		sum.Add(halves[1])
		if halves[1].N() != 200 || halves[0].N()+halves[1].N() != 300 {
			t.Fatalf("d=%d: deltas of %d and %d events", d, halves[0].N(), halves[1].N())
		}
		for name, got := range map[string]*Arm{"updated": arm, "added": sum} {
			if got.N() != 300 || got.Rewards() != wantR {
				t.Fatalf("d=%d %s: n=%d r=%v, want 300 and %v", d, name, got.N(), got.Rewards(), wantR)
			}
			for i, v := range got.A() {
				if !relClose(v, wantA[i], 1e-12) {
					t.Fatalf("d=%d %s: A[%d] = %v, want %v", d, name, i, v, wantA[i])
				}
			}
			for i, v := range got.B() {
				if !relClose(v, wantB[i], 1e-12) {
					t.Fatalf("d=%d %s: b[%d] = %v, want %v", d, name, i, v, wantB[i])
				}
			}
		}
	}
}

func TestRankIsStableOnTies(t *testing.T) {
	prior := Params{Theta: []float64{0, 0}, AInv: []float64{1, 0, 0, 1}}
	better := Params{Theta: []float64{1, 0}, AInv: []float64{1, 0, 0, 1}}
	got := Rank([]float64{1, 0}, []Params{prior, prior, better, prior}, 0.1, 3)
	want := []int{2, 0, 1}
	for i, r := range got {
		if r.Index != want[i] {
			t.Fatalf("rank = %v, want indices %v", got, want)
		}
	}
}

// shopContexts returns n seeded contexts shaped like the reference shop's
// (d = 15): three values in [0, 1), then one 1 in each one-hot group of 2,
// 5, 3 and 2 features, so 7 non-zero entries at varying places.
func shopContexts(n int) [][]float64 {
	rng := rand.New(rand.NewPCG(5, 6))
	out := make([][]float64, n)
	for i := range out {
		x := make([]float64, 15)
		for j := 0; j < 3; j++ {
			x[j] = rng.Float64()
		}
		off := 3
		for _, size := range []int{2, 5, 3, 2} {
			x[off+rng.IntN(size)] = 1
			off += size
		}
		out[i] = x
	}
	return out
}

func BenchmarkUpdate(b *testing.B) {
	arm := NewArm(15, 1)
	xs := shopContexts(256)
	i := 0
	for b.Loop() {
		_ = arm.Update(xs[i&255], 1)
		i++
	}
}

func BenchmarkDeltaUpdate(b *testing.B) {
	delta := NewDelta(15)
	xs := shopContexts(256)
	i := 0
	for b.Loop() {
		_ = delta.Update(xs[i&255], 1)
		i++
	}
}

func BenchmarkSolve(b *testing.B) {
	arm := NewArm(15, 1)
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float64, 15)
	for i := 0; i < 100; i++ {
		for j := range x {
			x[j] = rng.Float64()
		}
		_ = arm.Update(x, 1)
	}
	for b.Loop() {
		if _, err := arm.Solve(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestTopKMatchesStableSort offers random scores with many exact ties to
// TopK and checks its ranking against the definition: a stable sort by
// descending score, cut at k.
func TestTopKMatchesStableSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 4))
	for trial := 0; trial < 500; trial++ {
		n := rng.IntN(60)
		k := rng.IntN(70) - 2
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = float64(rng.IntN(8)) / 4 // few distinct values: ties
		}
		top := NewTopK(k)
		for i, s := range scores {
			if top.Admits(s) != (top.Len() < k || (top.Len() > 0 && s > minKept(top))) {
				t.Fatalf("trial %d: Admits(%v) wrong", trial, s)
			}
			top.Offer(i, s)
		}
		got := top.Ranked()
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		sort.SliceStable(want, func(a, b int) bool { return scores[want[a]] > scores[want[b]] })
		if k < 0 {
			k = 0
		}
		want = want[:min(k, n)]
		if len(got) != len(want) {
			t.Fatalf("trial %d (n=%d k=%d): %d items, want %d", trial, n, k, len(got), len(want))
		}
		for i := range want {
			if got[i].Index != want[i] || got[i].Score != scores[want[i]] {
				t.Fatalf("trial %d (n=%d k=%d): item %d is %v, want index %d", trial, n, k, i, got[i], want[i])
			}
		}
	}
}

// minKept is the lowest score a TopK keeps, read through a copy.
func minKept(t *TopK) float64 {
	m := math.Inf(1)
	for _, r := range t.heap {
		m = math.Min(m, r.Score)
	}
	return m
}

// TestTopKSeededMatchesSort offers random scores with many exact ties to a
// seeded TopK and checks its ranking against the definition: a sort by
// descending score, then ascending tie key, then index, cut at k; Admits
// must accept an equal score while the seeded order may place it first.
func TestTopKSeededMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 5))
	for trial := 0; trial < 500; trial++ {
		n := rng.IntN(60)
		k := rng.IntN(70) - 2
		seed := 1 + rng.Int64N(MaxSeed)
		ties := NewTies(seed)
		scores := make([]float64, n)
		for i := range scores {
			scores[i] = float64(rng.IntN(6)) / 4
		}
		top := NewTopKSeeded(k, seed)
		for i, s := range scores {
			if top.Admits(s) != (top.Len() < k || (top.Len() > 0 && s >= minKept(top))) {
				t.Fatalf("trial %d: Admits(%v) wrong", trial, s)
			}
			top.Offer(i, s)
		}
		got := top.Ranked()
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		sort.Slice(want, func(a, b int) bool {
			ia, ib := want[a], want[b]
			if scores[ia] != scores[ib] {
				return scores[ia] > scores[ib]
			}
			if ka, kb := ties.Key(ia), ties.Key(ib); ka != kb {
				return ka < kb
			}
			return ia < ib
		})
		want = want[:min(max(k, 0), n)]
		if len(got) != len(want) {
			t.Fatalf("trial %d (n=%d k=%d): %d items, want %d", trial, n, k, len(got), len(want))
		}
		for i := range want {
			if got[i].Index != want[i] {
				t.Fatalf("trial %d (n=%d k=%d seed %d): item %d is %v, want index %d", trial, n, k, seed, i, got[i], want[i])
			}
		}
	}
}

// TestTieKeys pins the tie keys (the scoring script computes the same in
// doubles, and the store tests compare the two): hand-computed values of
// ((a i + c) mod p)² mod p, and seed 0 as index order. RankSeeded with seed
// 0 is Rank; with a seed it orders tied arms by key.
func TestTieKeys(t *testing.T) {
	const p = 1<<31 - 1
	for _, seed := range []int64{1, 2, 12345, MaxSeed} {
		u := new(big.Int).Mod(new(big.Int).Mul(big.NewInt(seed), big.NewInt(48271)), big.NewInt(p))
		a := new(big.Int).Exp(u, big.NewInt(2), big.NewInt(p))
		c := new(big.Int).Exp(u, big.NewInt(3), big.NewInt(p))
		ties := NewTies(seed)
		for _, i := range []int{0, 1, 2, 1000, p - 2} {
			h := new(big.Int).Add(new(big.Int).Mul(a, big.NewInt(int64(i))), c)
			want := new(big.Int).Exp(h, big.NewInt(2), big.NewInt(p)).Int64()
			if got := ties.Key(i); got != want {
				t.Fatalf("seed %d: Key(%d) = %d, want %d", seed, i, got, want)
			}
		}
	}
	if k := NewTies(0).Key(7); k != 7 {
		t.Fatalf("unseeded Key(7) = %d, want 7", k)
	}
	prior := Params{Theta: []float64{0}, AInv: []float64{1}}
	params := []Params{prior, prior, prior, prior, prior}
	ties := NewTies(99)
	got := RankSeeded([]float64{1}, params, 1, 5, 99)
	for i := 1; i < len(got); i++ {
		if ties.Key(got[i-1].Index) > ties.Key(got[i].Index) {
			t.Fatalf("RankSeeded = %v: not in tie-key order", got)
		}
	}
	if r := RankSeeded([]float64{1}, params, 1, 5, 0); r[0].Index != 0 || r[4].Index != 4 {
		t.Fatalf("RankSeeded with seed 0 = %v, want index order", r)
	}
	for _, bad := range []int64{-1, MaxSeed + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("NewTies(%d) did not panic", bad)
				}
			}()
			NewTies(bad)
		}()
	}
}
