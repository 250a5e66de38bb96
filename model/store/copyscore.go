package store

import (
	"fmt"
	"math"

	"github.com/redbandit/redbandit/model/linucb"
)

// Recommend answers q from the copy as recommend.lua answers it from Redis:
// the same products in the same order and the same scores (see Copy), and
// the script's BADARG errors (k, alpha, a context value that is not finite,
// scores that would overflow) with the same text. It returns ErrNotLocal
// for a context of another length than the model's dimension; the script
// answers that with its own error. Ranking is linucb.TopK's, as is Rank's.
//
// The sums follow the script's order term by term: with one-hot groups and
// a context one-hot in each, the folded values (θ_P, W_P, V_P,c) summed as
// the writer sums them for the rows the script reads, then the script's
// mean and quadratic form; otherwise the general layout's sums over x's
// non-zero entries. Each product is a float64 conversion, so that no
// compiler fuses a multiply-add the script does not fuse.
func (cp *Copy) Recommend(q Query) ([]Item, error) {
	cp.mu.RLock()
	defer cp.mu.RUnlock()
	st := cp.st
	d := st.d
	if len(q.Context) != d {
		return nil, ErrNotLocal
	}
	root := RootKey(cp.model)
	badArg := func(format string, args ...any) error {
		return fmt.Errorf("recommend from %s: %w: %s", root, ErrBadArg, fmt.Sprintf(format, args...))
	}
	if q.K < 1 {
		return nil, badArg("k must be an integer >= 1, got %d", q.K)
	}
	alpha := q.Alpha
	if !(alpha >= 0) || math.IsInf(alpha, 0) {
		return nil, badArg("alpha must be a finite number >= 0, got %s", FormatFloat(alpha))
	}
	x := q.Context
	var sbuf [MaxDim]int
	S := sbuf[:0]
	for i, v := range x {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, badArg("context value %d (%s) is not a finite number", i+1, FormatFloat(v))
		}
		if v != 0 {
			S = append(S, i)
		}
	}
	var xx float64
	for _, i := range S {
		xx += float64(x[i] * x[i])
	}
	xxl := xx / st.lambda
	// The script's bound on every arm's bonus (see recommend.lua): an arm
	// whose mean plus it is not admitted cannot enter the top k.
	bound := float64(alpha*math.Sqrt(xxl)) * (1 + 1e-6)
	ns := len(S)
	if !finiteF(xxl*float64(ns*ns+1)) || !finiteF(bound) {
		return nil, badArg("context or alpha too large: the scores would overflow a double")
	}

	sc := scorer{d: d, alpha: alpha}
	nc := len(st.cont)
	pid := 0
	if st.pats != nil && st.format == FormatVersion {
		// One-hot in every group (at most one 1 and otherwise zeros; none
		// only in an optional group): pattern pid, in mixed radix, the
		// first group's digit varying fastest.
		fast := true
		stride := 1
		for _, g := range st.groups {
			pos := -1
			for p, f := range g.Features {
				if v := x[f]; v != 0 {
					if v != 1 || pos >= 0 {
						fast = false
					}
					pos = p
				}
			}
			if pos < 0 {
				if g.Optional {
					pos = len(g.Features) // the "none" digit
				} else {
					fast = false
				}
			}
			pid += max(pos, 0) * stride
			stride *= g.Digits()
		}
		// As the script: rows unless much longer than x's columns.
		sc.fast = fast && 2+2*nc+nc*(nc+1)/2 <= 2*(ns+ns*(ns+1)/2)
	}
	if sc.fast {
		f := st.foldedFor(pid)
		sc.tp, sc.wv, sc.ctheta, sc.cainv, sc.nc, sc.ntri = f.tp, f.wv, st.ctheta, st.cainv, nc, st.ncv()-nc
		sc.xc = make([]float64, nc)
		sc.yc = make([]float64, nc)
		for i, c := range st.cont {
			sc.xc[i] = x[c]
			sc.yc[i] = 2 * x[c]
		}
		for a := range nc {
			for b := a; b < nc; b++ {
				if a == b {
					sc.coef = append(sc.coef, float64(sc.xc[a]*sc.xc[a]))
				} else {
					sc.coef = append(sc.coef, float64(sc.yc[a]*sc.xc[b]))
				}
			}
		}
	} else {
		sc.x, sc.S = x, S
		for p, i := range S {
			for _, j := range S[p:] {
				if i == j {
					sc.coef = append(sc.coef, float64(x[i]*x[i]))
				} else {
					sc.coef = append(sc.coef, float64(2*x[i])*x[j])
				}
				sc.pos = append(sc.pos, i*d+j)
			}
		}
		sc.theta, sc.ainv = st.theta, st.ainv
	}

	if q.Seed < 0 || q.Seed > linucb.MaxSeed {
		return nil, badArg("SEED must be followed by an integer 0..%d, got %d", linucb.MaxSeed, q.Seed)
	}
	top := linucb.NewTopKSeeded(q.K, q.Seed) // the script's order, ties included
	if q.Candidates != nil {
		// The candidates in order, each once, none excluded.
		seen := make(map[string]struct{}, len(q.Exclude)+len(q.Candidates))
		for _, id := range q.Exclude {
			seen[id] = struct{}{}
		}
		cands := make([]string, 0, len(q.Candidates))
		for _, id := range q.Candidates {
			if _, ok := seen[id]; !ok {
				seen[id] = struct{}{}
				cands = append(cands, id)
			}
		}
		prior := float64(alpha * math.Sqrt(xxl)) // a product the model has never seen
		for c, id := range cands {
			a, ok := st.index[id]
			if !ok {
				if top.Admits(prior) {
					top.Offer(c, prior)
				}
				continue
			}
			sc.offer(top, c, a, bound)
		}
		ranked := top.Ranked()
		items := make([]Item, len(ranked))
		for i, r := range ranked {
			items[i] = Item{ID: cands[r.Index], Score: r.Score}
		}
		return items, nil
	}
	var skip map[int]struct{}
	if len(q.Exclude) > 0 {
		skip = make(map[int]struct{}, len(q.Exclude))
		for _, id := range q.Exclude {
			if a, ok := st.index[id]; ok {
				skip[a] = struct{}{}
			}
		}
	}
	for a := range st.ids {
		if skip != nil {
			if _, ok := skip[a]; ok {
				continue
			}
		}
		sc.offer(top, a, a, bound)
	}
	ranked := top.Ranked()
	items := make([]Item, len(ranked))
	for i, r := range ranked {
		items[i] = Item{ID: st.ids[r.Index], Score: r.Score}
	}
	return items, nil
}

// scorer scores arms for one request.
type scorer struct {
	d     int
	alpha float64
	fast  bool
	// Folded (one-hot contexts): the pattern's θ_P (one per arm) and W_P,
	// V_P,c (1 + nc per arm), the continuous θ_c (nc per arm) and A⁻¹
	// over them (ntri per arm); x over the continuous features and twice
	// that.
	tp, wv, ctheta, cainv []float64
	nc, ntri              int
	xc, yc                []float64
	// General: x, its non-zero entries, every arm's θ and A⁻¹.
	x           []float64
	S           []int
	theta, ainv []float64
	// The quadratic form's coefficients, over the continuous features
	// (folded: in the order of the continuous values) or over S (general,
	// with their positions in A⁻¹), i ≤ j.
	coef []float64
	pos  []int
}

// offer offers arm a to top as item unless its mean plus bound shows it
// cannot enter.
func (sc *scorer) offer(top *linucb.TopK, item, a int, bound float64) {
	if sc.fast {
		nc := sc.nc
		ct := sc.ctheta[a*nc : (a+1)*nc]
		mean := sc.tp[a] // θ_P
		for i, xi := range sc.xc {
			mean += float64(xi * ct[i])
		}
		if !top.Admits(mean + bound) {
			return
		}
		wv := sc.wv[a*(1+nc) : (a+1)*(1+nc)]
		ca := sc.cainv[a*sc.ntri : (a+1)*sc.ntri]
		q := wv[0] // W_P
		for i, yi := range sc.yc {
			q += float64(yi * wv[1+i])
		}
		for t, c := range sc.coef {
			q += float64(c * ca[t])
		}
		sc.enter(top, item, mean, q)
		return
	}
	d := sc.d
	theta := sc.theta[a*d : (a+1)*d]
	var mean float64
	for _, i := range sc.S {
		mean += float64(sc.x[i] * theta[i])
	}
	if !top.Admits(mean + bound) {
		return
	}
	ainv := sc.ainv[a*d*d : (a+1)*d*d]
	var q float64
	for t, c := range sc.coef {
		q += float64(c * ainv[sc.pos[t]])
	}
	sc.enter(top, item, mean, q)
}

// enter offers the score of mean and quadratic form q.
func (sc *scorer) enter(top *linucb.TopK, item int, mean, q float64) {
	if q < 0 {
		q = 0
	}
	s := mean + float64(sc.alpha*math.Sqrt(q))
	if top.Admits(s) {
		top.Offer(item, s)
	}
}

func finiteF(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
