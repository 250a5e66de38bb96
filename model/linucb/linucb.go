// Package linucb implements the arithmetic of a disjoint LinUCB contextual
// bandit: one independent ridge regression per arm (product) over a context
// vector x of dimension d.
//
// For an arm with regularisation λ > 0 the state after events (x_t, r_t) is
//
//	A = λI + Σ x_t x_tᵀ   (d×d, symmetric positive definite)
//	b = Σ r_t x_t         (d)
//	n = number of events
//
// and its parameters are θ = A⁻¹b (the ridge-regression estimate) and A⁻¹.
// The upper-confidence score of the arm for a context x is
//
//	score = xᵀθ + α·√(xᵀA⁻¹x)
//
// A Delta sums events without the prior, as a trainer does between two
// writes, and Arm.Add folds it into an arm. Update costs O(d²) at most (it
// touches the non-zero entries of x only) and allocates nothing; Solve
// costs O(d³) (a Cholesky factorisation and inverse). Shape misuse (a
// vector of the wrong length) panics; numerical failure (a non-finite
// input, a matrix that is not positive definite) is returned as an error.
package linucb

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// Errors returned by this package. Callers branch on them with errors.Is.
var (
	// ErrNonFinite reports a NaN or infinite value in a context, a reward,
	// a restored state or a computed result, or a context value beyond
	// ±MaxAbsContext (whose products could overflow).
	ErrNonFinite = errors.New("linucb: non-finite value")
	// ErrNotPositiveDefinite reports that A could not be factorised by
	// Cholesky: it is not (numerically) symmetric positive definite.
	ErrNotPositiveDefinite = errors.New("linucb: A is not positive definite")
)

// DefaultLambda is the default ridge regularisation λ.
const DefaultLambda = 1.0

// DefaultAlpha is the default exploration weight α.
const DefaultAlpha = 0.1

// Arm is the learning state (A, b, n) of one arm, plus the sum of its
// rewards (not needed by LinUCB; kept to report the arm's mean reward). The
// zero value is not usable; create arms with NewArm or Restore.
type Arm struct {
	d int
	a []float64 // d×d row-major, both triangles kept
	b []float64 // d
	n int64
	r float64 // Σ r
}

// NewArm returns the prior state of an arm of dimension d: A = λI, b = 0,
// n = 0. It panics if d < 1 or λ is not a positive finite number.
func NewArm(d int, lambda float64) *Arm {
	if d < 1 {
		panic(fmt.Sprintf("linucb: dimension %d < 1", d))
	}
	if !(lambda > 0) || math.IsInf(lambda, 0) {
		panic(fmt.Sprintf("linucb: lambda %v is not positive and finite", lambda))
	}
	arm := &Arm{d: d, a: make([]float64, d*d), b: make([]float64, d)}
	for i := 0; i < d; i++ {
		arm.a[i*d+i] = lambda
	}
	return arm
}

// Restore returns an arm with the given state: A, b, n and the sum of the
// rewards r. a is d×d row-major and b has length d; both are copied. It
// panics if the lengths do not match d and returns ErrNonFinite if any value
// is not finite.
func Restore(d int, a, b []float64, n int64, r float64) (*Arm, error) {
	if d < 1 || len(a) != d*d || len(b) != d {
		panic(fmt.Sprintf("linucb: restore d=%d with len(a)=%d len(b)=%d", d, len(a), len(b)))
	}
	if !finite(a) || !finite(b) || math.IsNaN(r) || math.IsInf(r, 0) {
		return nil, ErrNonFinite
	}
	if n < 0 {
		return nil, fmt.Errorf("linucb: negative event count %d", n)
	}
	arm := &Arm{d: d, a: append([]float64(nil), a...), b: append([]float64(nil), b...), n: n, r: r}
	return arm, nil
}

// Dim returns d.
func (arm *Arm) Dim() int { return arm.d }

// N returns the number of events folded into the arm.
func (arm *Arm) N() int64 { return arm.n }

// Rewards returns the sum of the rewards folded into the arm; Rewards()/N()
// is its mean reward.
func (arm *Arm) Rewards() float64 { return arm.r }

// A returns A as a d×d row-major slice. The slice aliases the arm's state:
// the caller must not modify it.
func (arm *Arm) A() []float64 { return arm.a }

// B returns b. The slice aliases the arm's state: the caller must not modify it.
func (arm *Arm) B() []float64 { return arm.b }

// Update folds one event into the arm: A += x xᵀ, b += r x, n += 1 (and r
// into the sum of rewards).
// It costs O(d + nnz(x)²) and allocates nothing for d ≤ 64. It panics if len(x) != d and
// returns ErrNonFinite, leaving the arm unchanged, if x or r is not finite.
func (arm *Arm) Update(x []float64, r float64) error {
	d := arm.d
	// Only the rows and columns of the non-zero entries change: with k of
	// them the update costs O(k²) (the reference contexts have k ≈ 7 of 15).
	var idx [64]int
	var val [64]float64
	nz, xs, err := nonZero(x, r, d, &idx, &val)
	if err != nil {
		return err
	}
	for p, i := range nz {
		xi := xs[p]
		row := arm.a[i*d : (i+1)*d]
		for q, j := range nz {
			row[j] += xi * xs[q]
		}
		arm.b[i] += r * xi
	}
	arm.n++
	arm.r += r
	return nil
}

// Add folds the events summed in e into the arm: A += Σxxᵀ, b += Σrx,
// n += n_e and the reward sums add. A forgetting delta (of m events) first
// fades the arm's evidence, A ← λI + γ^m (A − λI), b ← γ^m b, then adds its
// age-weighted sums (see Forgetting). It costs O(d²) and panics if the
// dimensions differ.
func (arm *Arm) Add(e *Delta) {
	d := arm.d
	if e.d != d {
		panic(fmt.Sprintf("linucb: add a delta of dimension %d to an arm of dimension %d", e.d, d))
	}
	if e.forgets() {
		arm.addFaded(e)
		return
	}
	k := 0
	for i := 0; i < d; i++ {
		arm.a[i*d+i] += e.s[k]
		k++
		for j := i + 1; j < d; j++ {
			arm.a[i*d+j] += e.s[k]
			arm.a[j*d+i] += e.s[k]
			k++
		}
	}
	for i, v := range e.b {
		arm.b[i] += v
	}
	arm.n += e.n
	arm.r += e.r
}

// addFaded is Add for a forgetting delta.
func (arm *Arm) addFaded(e *Delta) {
	d, lambda := arm.d, e.lambda
	g := math.Pow(e.gamma, float64(e.n)) // the fading of the arm's evidence
	k := 0
	for i := 0; i < d; i++ {
		arm.a[i*d+i] = lambda + g*(arm.a[i*d+i]-lambda) + e.s[k]/e.w
		k++
		for j := i + 1; j < d; j++ {
			v := g*arm.a[i*d+j] + e.s[k]/e.w
			arm.a[i*d+j], arm.a[j*d+i] = v, v
			k++
		}
	}
	for i, v := range e.b {
		arm.b[i] = g*arm.b[i] + v/e.w
	}
	arm.n += e.n
	arm.r += e.r
}

// Delta is a sum of events of one arm without its prior — Σ x xᵀ, Σ r x,
// their number and the sum of their rewards — as a trainer accumulates them
// between two writes. Arm.Add folds it into an arm. It keeps the upper
// triangle of Σ x xᵀ only (d(d+1)/2 numbers), so its Update costs about
// half of Arm.Update; Arm.Add then gives exactly what Arm.Update would
// have. The zero value is not usable; create deltas with NewDelta.
//
// A forgetting delta (NewForgettingDelta) weighs its events by their age
// instead: see Forgetting.
type Delta struct {
	d int
	s []float64 // upper triangle of Σ x xᵀ, row by row (times w when forgetting)
	b []float64 // Σ r x (times w when forgetting)
	n int64
	r float64

	// Forgetting only (gamma < 1): the sums are kept scaled by w, the
	// weight given to the latest event, so that an event costs what it
	// costs without forgetting instead of rescaling every sum.
	gamma, lambda float64
	w             float64
}

// NewDelta returns an empty delta of dimension d. It panics if d < 1.
func NewDelta(d int) *Delta {
	if d < 1 {
		panic(fmt.Sprintf("linucb: dimension %d < 1", d))
	}
	return &Delta{d: d, s: make([]float64, d*(d+1)/2), b: make([]float64, d), gamma: 1, w: 1}
}

// Forgetting. With a half-life of h events, every event an arm folds first
// multiplies the evidence it holds by γ = 2^(−1/h), then adds its own:
//
//	A ← λI + γ(A − λI) + x xᵀ
//	b ← γb + r x
//
// so that after n events A = λI + Σ_t γ^(n−t) x_t x_tᵀ and b = Σ_t γ^(n−t)
// r_t x_t: an event's weight halves every h later events of the same arm.
// The ridge λI is never forgotten, so A stays at least λI (the bound the
// scoring script relies on). Evidence an arm started with (a prior's
// pseudo-events, Prior) fades like events. n and the sum of rewards keep
// counting every event with weight 1 (they report what was folded).
//
// A forgetting delta sums a run of events of one arm as
// S = Σ_t γ^(m−t) x_t x_tᵀ and B = Σ_t γ^(m−t) r_t x_t over its m events,
// and Arm.Add applies A ← λI + γ^m (A − λI) + S, b ← γ^m b + B: the
// per-event rule above, applied once per event whatever the flushes, so a
// trainer that replays events after a crash reaches the same state as one
// that never crashed (up to rounding). Internally it keeps the sums scaled
// by w = γ^(−(m−1)) and adds each event with weight w, O(nnz(x)²) like a
// delta without forgetting, renormalising (O(d²)) when w passes 2⁶⁴.

// DecayFactor returns γ = 2^(−1/h) for a half-life of h events, and 1 (no
// forgetting) for h = 0. It panics if h is negative or not finite.
func DecayFactor(halfLife float64) float64 {
	if !(halfLife >= 0) || math.IsInf(halfLife, 0) {
		panic(fmt.Sprintf("linucb: half-life %v is not a non-negative finite number", halfLife))
	}
	if halfLife == 0 {
		return 1
	}
	return math.Exp2(-1 / halfLife)
}

// NewForgettingDelta returns an empty delta of dimension d whose events
// fade with a half-life of halfLife events (see Forgetting), for arms of
// regularisation λ = lambda; halfLife 0 is NewDelta(d). It panics if d < 1,
// halfLife is negative or not finite, or λ is not positive and finite.
func NewForgettingDelta(d int, lambda, halfLife float64) *Delta {
	e := NewDelta(d)
	if !(lambda > 0) || math.IsInf(lambda, 0) {
		panic(fmt.Sprintf("linucb: lambda %v is not positive and finite", lambda))
	}
	e.gamma, e.lambda = DecayFactor(halfLife), lambda
	return e
}

// renormAt is the weight w at which a forgetting delta divides its sums by
// w, once every 64·h events: the scaled sums stay below 2⁶⁴·h/ln 2 times the
// largest x_i x_j (1e200 for contexts within MaxAbsContext), far from
// overflow.
const renormAt = 0x1p64

// forgets reports whether e weighs its events by age.
func (e *Delta) forgets() bool { return e.gamma < 1 }

// N returns the number of events in the delta.
func (e *Delta) N() int64 { return e.n }

// Rewards returns the sum of the delta's rewards.
func (e *Delta) Rewards() float64 { return e.r }

// Update adds one event, like Arm.Update: it costs O(d + nnz(x)²/2),
// allocates nothing for d ≤ 64, panics if len(x) != d and returns
// ErrNonFinite, leaving the delta unchanged, if x or r is not finite.
func (e *Delta) Update(x []float64, r float64) error {
	d := e.d
	var idx [64]int
	var val [64]float64
	nz, xs, err := nonZero(x, r, d, &idx, &val)
	if err != nil {
		return err
	}
	w := 1.0 // exact: without forgetting the sums are the plain ones
	if e.forgets() {
		// The new event weighs w/γ, so relative to it every earlier event
		// is γ lighter: scaling the weight, not the sums.
		if e.w > renormAt {
			e.renorm()
		}
		e.w /= e.gamma
		w = e.w
	}
	for p, i := range nz {
		xi := xs[p]
		wxi := w * xi
		row := e.s[i*d-i*(i-1)/2-i:] // row[j] is entry (i, j), j ≥ i
		js, vs := nz[p:], xs[p:len(nz)]
		for q, j := range js {
			row[j] += wxi * vs[q]
		}
		e.b[i] += r * wxi
	}
	e.n++
	e.r += r
	return nil
}

// Merge adds the events of o to e. It costs O(d²) and panics if the
// dimensions differ, or if one delta forgets and the other does not (or
// with another half-life or λ). For forgetting deltas the order matters:
// o's events are taken to precede e's (a trainer gives a failed write's
// sums back to the deltas that collected the events after them), so o's
// sums fade by γ^(n_e).
func (e *Delta) Merge(o *Delta) {
	if o.d != e.d {
		panic(fmt.Sprintf("linucb: merge a delta of dimension %d into one of dimension %d", o.d, e.d))
	}
	if o.gamma != e.gamma || o.lambda != e.lambda {
		panic(fmt.Sprintf("linucb: merge a delta with decay %v and λ %v into one with %v and %v", o.gamma, o.lambda, e.gamma, e.lambda))
	}
	if e.forgets() {
		// e's sums are scaled by e.w; o's, once faded by γ^(n_e), must
		// carry the same scale.
		f := e.w * math.Pow(e.gamma, float64(e.n)) / o.w
		for i, v := range o.s {
			e.s[i] += f * v
		}
		for i, v := range o.b {
			e.b[i] += f * v
		}
	} else {
		for i, v := range o.s {
			e.s[i] += v
		}
		for i, v := range o.b {
			e.b[i] += v
		}
	}
	e.n += o.n
	e.r += o.r
}

// renorm divides a forgetting delta's sums by their scale w.
func (e *Delta) renorm() {
	for i := range e.s {
		e.s[i] /= e.w
	}
	for i := range e.b {
		e.b[i] /= e.w
	}
	e.w = 1
}

// nonZero checks an event (x of length d, values finite and within
// ±MaxAbsContext) and gathers x's non-zero entries, ascending: their
// indexes in idx and values in val (both of length nnz(x), backed by the
// arrays when d ≤ 64). One pass, each value tested by its bits.
func nonZero(x []float64, r float64, d int, idx *[64]int, val *[64]float64) ([]int, []float64, error) {
	if len(x) != d {
		panic(fmt.Sprintf("linucb: context of length %d for dimension %d", len(x), d))
	}
	if math.Float64bits(r)&expMask == expMask {
		return nil, nil, ErrNonFinite
	}
	if d > len(idx) {
		var is []int
		var vs []float64
		for i, xi := range x {
			if xi != 0 {
				if math.Float64bits(xi)&^signBit > maxAbsBits {
					return nil, nil, ErrNonFinite
				}
				is = append(is, i)
				vs = append(vs, xi)
			}
		}
		return is, vs, nil
	}
	// Without a branch on which entries are zero: where they fall changes
	// from event to event, and mispredicting it cost more than the rest.
	k := 0
	for i, xi := range x {
		u := math.Float64bits(xi)
		if u&^signBit > maxAbsBits {
			return nil, nil, ErrNonFinite
		}
		idx[k], val[k] = i, xi
		m := u << 1              // without the sign: 0 for ±0
		k += int((m | -m) >> 63) // 1 if m ≠ 0
	}
	return idx[:k], val[:k], nil
}

// expMask selects a float64's exponent bits, all set for ±Inf and NaN.
const expMask = 0x7ff << 52

// MaxAbsContext bounds the magnitude of the context values an arm folds
// (Arm.Update, Delta.Update): a product x_i·x_j then stays within 1e200,
// so the sums of A stay finite over any feasible number of events. Update
// refuses a larger value, like NaN and ±Inf, with ErrNonFinite; a finite
// context beyond it would otherwise overflow A to ±Inf and every later
// Solve of the arm would fail. Real features are many orders of magnitude
// smaller.
const MaxAbsContext = 1e100

// maxAbsBits holds the bits of MaxAbsContext: a float64's bits without the
// sign exceed it exactly when its magnitude exceeds MaxAbsContext or it is
// ±Inf or NaN (IEEE 754 orders non-negative doubles like their bits).
var maxAbsBits = math.Float64bits(MaxAbsContext)

// signBit selects a float64's sign bit.
const signBit = 1 << 63

// Params are the serving parameters of an arm: θ = A⁻¹b and A⁻¹
// (d×d row-major).
type Params struct {
	Theta []float64
	AInv  []float64
}

// Solve factorises A by Cholesky and returns θ and A⁻¹. It costs O(d³).
// It returns ErrNonFinite if A, b or the result is not finite and
// ErrNotPositiveDefinite if A cannot be factorised.
func (arm *Arm) Solve() (Params, error) {
	d := arm.d
	if !finite(arm.a) || !finite(arm.b) {
		return Params{}, ErrNonFinite // e.g. sums that overflowed
	}
	sym := mat.NewSymDense(d, append([]float64(nil), arm.a...))
	var chol mat.Cholesky
	if !chol.Factorize(sym) {
		return Params{}, ErrNotPositiveDefinite
	}
	var inv mat.SymDense
	if err := chol.InverseTo(&inv); err != nil {
		return Params{}, fmt.Errorf("%w: %v", ErrNotPositiveDefinite, err)
	}
	var theta mat.VecDense
	if err := chol.SolveVecTo(&theta, mat.NewVecDense(d, append([]float64(nil), arm.b...))); err != nil {
		return Params{}, fmt.Errorf("%w: %v", ErrNotPositiveDefinite, err)
	}
	p := Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}
	for i := 0; i < d; i++ {
		p.Theta[i] = theta.AtVec(i)
		for j := 0; j < d; j++ {
			p.AInv[i*d+j] = inv.At(i, j)
		}
	}
	if !finite(p.Theta) || !finite(p.AInv) {
		return Params{}, ErrNonFinite
	}
	return p, nil
}

// Score returns xᵀθ + α·√(xᵀA⁻¹x) for one arm, computed densely in O(d²).
// A quadratic form that rounds below zero is taken as zero. It panics if the
// lengths of x, θ and A⁻¹ do not agree.
func Score(x []float64, p Params, alpha float64) float64 {
	mean, q := MeanVar(x, p)
	return mean + alpha*math.Sqrt(q)
}

// MeanVar returns the two parts of the score: the estimate xᵀθ and the
// quadratic form xᵀA⁻¹x (clamped at zero).
func MeanVar(x []float64, p Params) (mean, q float64) {
	d := len(x)
	if len(p.Theta) != d || len(p.AInv) != d*d {
		panic(fmt.Sprintf("linucb: context of length %d for params of dimension %d", d, len(p.Theta)))
	}
	for i, xi := range x {
		mean += xi * p.Theta[i]
		row := p.AInv[i*d : (i+1)*d]
		var s float64
		for j, xj := range x {
			s += row[j] * xj
		}
		q += xi * s
	}
	return mean, math.Max(q, 0)
}

// Ranked is one arm's place in a ranking.
type Ranked struct {
	Index int     // position of the arm in the slice given to Rank
	Score float64 // its score
}

// Rank scores every arm densely and returns the best k, highest score first;
// equal scores keep the order of params (lower index first). It is the
// reference the Redis scoring script is tested against. It costs O(n·d²).
func Rank(x []float64, params []Params, alpha float64, k int) []Ranked {
	return RankSeeded(x, params, alpha, k, 0)
}

// RankSeeded is Rank with equal scores ordered by the tie keys of seed
// (Ties): seed 0 gives Rank's order. It panics if seed is out of range.
func RankSeeded(x []float64, params []Params, alpha float64, k int, seed int64) []Ranked {
	top := NewTopKSeeded(k, seed)
	for i, p := range params {
		top.Offer(i, Score(x, p, alpha))
	}
	return top.Ranked()
}

// Before reports whether a ranks before b in a ranking: a higher score, or
// an equal score and a lower index. It is the order of Rank and of every
// scorer that must answer like it (the sidecar's local scoring).
func Before(a, b Ranked) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.Index < b.Index)
}

// MaxSeed is the largest tie seed (2³¹−2); seeds are 0..MaxSeed.
const MaxSeed = tieP - 1

// tieP is the prime 2³¹−1 the tie keys are computed modulo.
const tieP = 1<<31 - 1

// Ties orders items of equal score for one seed, the same way as the
// scoring script's SEED option (docs/FORMAT.md): by the tie key
// ((a·i + c) mod p)² mod p of each item's index i, lower first, then by
// index, where p = 2³¹−1, u = 48271·seed, a = u² and c = u³ (mod p). The
// affine map alone is a permutation of the indexes but gives few distinct
// orders of a small set of them; the square scrambles it (two indexes below
// p share a key only if a·(i+j) + 2c is a multiple of p). Each of a set of
// tied items comes first for about as many seeds as any other. Every
// intermediate value stays below 2⁵³ in the script's doubles. Seed 0 (the
// zero value) keeps index order.
type Ties struct {
	a, c uint64 // a = 0: index order
}

// NewTies returns the tie order of seed, which must be in 0..MaxSeed (it
// panics otherwise).
func NewTies(seed int64) Ties {
	if seed < 0 || seed > MaxSeed {
		panic(fmt.Sprintf("linucb: tie seed %d outside 0..%d", seed, MaxSeed))
	}
	if seed == 0 {
		return Ties{}
	}
	u := uint64(seed) * 48271 % tieP
	a := u * u % tieP
	return Ties{a: a, c: a * u % tieP}
}

// Seeded reports whether t orders ties otherwise than by index.
func (t Ties) Seeded() bool { return t.a != 0 }

// Key returns the tie key of index i (i itself when unseeded); i is taken
// modulo 2³¹−1.
func (t Ties) Key(i int) int64 {
	if t.a == 0 {
		return int64(i)
	}
	h := (t.a*(uint64(i)%tieP) + t.c) % tieP
	return int64(h * h % tieP)
}

// Before reports whether a ranks before b: a higher score, or an equal
// score and a lower tie key, or an equal key and a lower index. Unseeded,
// it is the package's Before.
func (t Ties) Before(a, b Ranked) bool {
	if a.Score != b.Score || t.a == 0 {
		return Before(a, b)
	}
	if ka, kb := t.Key(a.Index), t.Key(b.Index); ka != kb {
		return ka < kb
	}
	return a.Index < b.Index
}

// TopK keeps the best k of items offered one by one in increasing Index
// order, ranked as Rank ranks them (Before), or with a seed as RankSeeded
// (Ties.Before). Rank is built on it, and so is any scorer that must give
// Rank's order: offering the same scores gives the same ranking, ties
// included. It costs O(log k) per item that enters and O(1) per item that
// does not. The zero value is not usable; create it with NewTopK.
type TopK struct {
	k    int
	ties Ties
	heap []Ranked // a binary heap whose root is the entry ranked last
}

// NewTopK returns an empty TopK keeping the best k (none if k < 1).
func NewTopK(k int) *TopK {
	return NewTopKSeeded(k, 0)
}

// NewTopKSeeded returns an empty TopK keeping the best k, ties ordered by
// NewTies(seed) (it panics if seed is out of range).
func NewTopKSeeded(k int, seed int64) *TopK {
	return &TopK{k: k, ties: NewTies(seed), heap: make([]Ranked, 0, min(max(k, 0), 64))}
}

// Admits reports whether an item scoring s, offered now, might enter:
// always while fewer than k are kept, else unseeded only with a strictly
// higher score than the last kept (a later item with an equal score ranks
// after it), seeded with a score at least as high (an equal one enters if
// its tie key is lower). A scorer may skip computing an item's score when
// an upper bound of it is not admitted.
func (t *TopK) Admits(s float64) bool {
	if len(t.heap) < t.k {
		return true
	}
	if t.ties.Seeded() {
		return t.k > 0 && s >= t.heap[0].Score
	}
	return t.k > 0 && s > t.heap[0].Score
}

// Offer offers the item index with score s; index must exceed every index
// offered before.
func (t *TopK) Offer(index int, s float64) {
	h := t.heap
	r := Ranked{Index: index, Score: s}
	if len(h) < t.k {
		h = append(h, r)
		for i := len(h) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if !t.ties.Before(h[p], h[i]) {
				break
			}
			h[i], h[p] = h[p], h[i]
			i = p
		}
		t.heap = h
		return
	}
	if t.k < 1 || !t.ties.Before(r, h[0]) {
		return
	}
	h[0] = r
	for i := 0; ; { // sift down
		l, low := 2*i+1, i
		if l < len(h) && t.ties.Before(h[low], h[l]) {
			low = l
		}
		if l+1 < len(h) && t.ties.Before(h[low], h[l+1]) {
			low = l + 1
		}
		if low == i {
			break
		}
		h[i], h[low] = h[low], h[i]
		i = low
	}
}

// Len returns the number of items kept.
func (t *TopK) Len() int { return len(t.heap) }

// Ranked returns the items kept, best first. It reorders the TopK's own
// storage: offer nothing after it.
func (t *TopK) Ranked() []Ranked {
	sort.Slice(t.heap, func(i, j int) bool { return t.ties.Before(t.heap[i], t.heap[j]) })
	return t.heap
}

func finite(v []float64) bool {
	for _, f := range v {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}
