package linucb

import (
	"math"
	"math/rand/v2"
	"testing"
)

// forgetRef is the closed form of forgetting (package comment): after n
// events, A = λI + γ^n·P + Σ_t γ^(n−t) x_t x_tᵀ and b = γ^n·p + Σ_t γ^(n−t)
// r_t x_t for a starting evidence (P, p), each weight γ^k computed by
// math.Pow directly rather than by the per-event products the package uses.
func forgetRef(d int, lambda, gamma float64, p0A, p0b []float64, xs [][]float64, rs []float64) (a, b []float64) {
	n := len(xs)
	a, b = make([]float64, d*d), make([]float64, d)
	g := math.Pow(gamma, float64(n))
	for i := 0; i < d; i++ {
		b[i] = g * p0b[i]
		for j := 0; j < d; j++ {
			a[i*d+j] = g * p0A[i*d+j]
		}
		a[i*d+i] += lambda
	}
	for t, x := range xs {
		w := math.Pow(gamma, float64(n-1-t))
		for i := 0; i < d; i++ {
			b[i] += w * rs[t] * x[i]
			for j := 0; j < d; j++ {
				a[i*d+j] += w * x[i] * x[j]
			}
		}
	}
	return a, b
}

// TestForgettingMatchesClosedForm folds events into an arm with a starting
// evidence through forgetting deltas cut into random runs — some of them
// merged after a later run, as a trainer gives a failed write's sums back —
// and compares A and b with the closed form, to 1e-12 relative. Half-lives
// 0.5 (γ = 1/4: the deltas renormalise every 32 events, and runs of up to
// 700 events would overflow without it), 3 and 1,000.
func TestForgettingMatchesClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const d, lambda = 6, 0.5
	for _, h := range []float64{0.5, 3, 1000} {
		gamma := DecayFactor(h)
		n, maxRun := 300, 60
		if h < 1 {
			// Runs of up to 700 events: 4^700 = 2^1400 would overflow
			// without the renormalisation.
			n, maxRun = 1000, 700
		}
		xs, rs := make([][]float64, n), make([]float64, n)
		for t := range xs {
			xs[t] = make([]float64, d)
			for i := range xs[t] {
				if rng.Float64() < 0.6 {
					xs[t][i] = rng.NormFloat64()
				}
			}
			rs[t] = float64(rng.IntN(2))
		}
		// A starting evidence (a prior): P = 2·I + u uᵀ, p = u.
		p0A, p0b := make([]float64, d*d), make([]float64, d)
		for i := 0; i < d; i++ {
			p0b[i] = rng.NormFloat64()
		}
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				p0A[i*d+j] = p0b[i] * p0b[j]
			}
			p0A[i*d+i] += 2
		}
		start := append([]float64(nil), p0A...)
		for i := 0; i < d; i++ {
			start[i*d+i] += lambda
		}
		arm, err := Restore(d, start, p0b, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for t0 := 0; t0 < n; {
			m := 1 + rng.IntN(maxRun)
			if t0+m > n {
				m = n - t0
			}
			older := NewForgettingDelta(d, lambda, h)
			for ; m > 0; m-- {
				if err := older.Update(xs[t0], rs[t0]); err != nil {
					t.Fatal(err)
				}
				t0++
			}
			// Half of the time, the later events go into a fresh delta that
			// then takes the older one back (Merge: o precedes e).
			if rng.IntN(2) == 0 && t0 < n {
				k := min(1+rng.IntN(40), n-t0)
				newer := NewForgettingDelta(d, lambda, h)
				for ; k > 0; k-- {
					_ = newer.Update(xs[t0], rs[t0])
					t0++
				}
				newer.Merge(older)
				older = newer
			}
			arm.Add(older)
		}
		wantA, wantB := forgetRef(d, lambda, gamma, p0A, p0b, xs, rs)
		for i := range wantA {
			if !relClose(arm.A()[i], wantA[i], 1e-12) {
				t.Fatalf("h=%v: A[%d] = %v, closed form %v", h, i, arm.A()[i], wantA[i])
			}
		}
		for i := range wantB {
			if !relClose(arm.B()[i], wantB[i], 1e-12) {
				t.Fatalf("h=%v: b[%d] = %v, closed form %v", h, i, arm.B()[i], wantB[i])
			}
		}
		if arm.N() != int64(n) {
			t.Fatalf("h=%v: n = %d, want %d", h, arm.N(), n)
		}
		if _, err := arm.Solve(); err != nil {
			t.Fatalf("h=%v: solve: %v", h, err)
		}
	}
}

// TestNoForgettingIsPlainDelta checks that a half-life of 0 is the plain
// delta, bit for bit.
func TestNoForgettingIsPlainDelta(t *testing.T) {
	ctx := shopContexts(200)
	plain, zero := NewArm(15, 1), NewArm(15, 1)
	e, f := NewDelta(15), NewForgettingDelta(15, 1, 0)
	for i, x := range ctx {
		_ = e.Update(x, float64(i%3%2))
		_ = f.Update(x, float64(i%3%2))
	}
	plain.Add(e)
	zero.Add(f)
	for i := range plain.A() {
		if plain.A()[i] != zero.A()[i] {
			t.Fatalf("A[%d]: %v and %v", i, plain.A()[i], zero.A()[i])
		}
	}
}

// BenchmarkForgettingDeltaUpdate is BenchmarkDeltaUpdate with a half-life
// of 100 events (renormalising every 6,400).
func BenchmarkForgettingDeltaUpdate(b *testing.B) {
	delta := NewForgettingDelta(15, 1, 100)
	xs := shopContexts(256)
	i := 0
	for b.Loop() {
		_ = delta.Update(xs[i&255], 1)
		i++
	}
}
