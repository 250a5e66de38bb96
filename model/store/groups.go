package store

import (
	"encoding/json"
	"fmt"

	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
)

// Limits on one-hot groups: the number of patterns (the product of the
// group sizes) and the pattern values stored per arm.
const (
	MaxPatterns      = 1024
	MaxPatternValues = 4096
)

// patterns describes a model's one-hot groups and computes, for one arm,
// the values the scoring script reads instead of the groups' θ and A⁻¹
// entries when a context is one-hot in every group (docs/FORMAT.md).
//
// A pattern P picks one feature p_g from each group g (or none from an
// optional group: its last digit); patterns are numbered in mixed radix, the
// first group's digit varying fastest. For an arm and each pattern, with c
// ranging over the continuous features (those in no group) and the sums over
// the groups with a pick:
//
//	θ_P   = Σ_g θ[p_g]
//	W_P   = Σ_g Σ_h A⁻¹[p_g][p_h]
//	V_P,c = Σ_g A⁻¹[c][p_g]
//
// so that for x = (continuous part x_C, one-hot pattern P)
//
//	xᵀθ    = Σ_c x_c θ_c + θ_P
//	xᵀA⁻¹x = Σ_{c,c'} x_c x_c' A⁻¹[c][c'] + 2 Σ_c x_c V_P,c + W_P.
type patterns struct {
	d      int
	groups []model.Group
	cont   []int  // continuous features, in index order
	count  int    // number of patterns; 0 without groups
	json   string // groups as stored in the model, "[]" for none
}

func newPatterns(d int, groups []model.Group) (*patterns, error) {
	p := &patterns{d: d, groups: groups, json: "[]"}
	if len(groups) == 0 {
		for i := 0; i < d; i++ {
			p.cont = append(p.cont, i)
		}
		return p, nil
	}
	seen := make([]bool, d)
	p.count = 1
	for g, grp := range groups {
		if len(grp.Features) == 0 {
			return nil, fmt.Errorf("%w: group %d is empty", ErrBadArg, g)
		}
		for _, f := range grp.Features {
			if f < 0 || f >= d || seen[f] {
				return nil, fmt.Errorf("%w: group %d has feature %d out of range or in another group", ErrBadArg, g, f)
			}
			seen[f] = true
		}
		p.count *= grp.Digits()
		if p.count > MaxPatterns {
			return nil, fmt.Errorf("%w: groups make more than %d patterns", ErrBadArg, MaxPatterns)
		}
	}
	for i := 0; i < d; i++ {
		if !seen[i] {
			p.cont = append(p.cont, i)
		}
	}
	if p.count*(2+len(p.cont)) > MaxPatternValues {
		return nil, fmt.Errorf("%w: groups make %d pattern values per arm, more than %d", ErrBadArg, p.count*(2+len(p.cont)), MaxPatternValues)
	}
	b, err := json.Marshal(groups)
	if err != nil {
		return nil, fmt.Errorf("encode groups: %w", err)
	}
	p.json = string(b)
	return p, nil
}

// values returns, for every pattern in order, θ_P, W_P and V_P,c for each
// continuous c: count·(2+len(cont)) numbers, none without groups.
// It costs O(patterns · groups · (groups + continuous)).
func (p *patterns) values(params linucb.Params) []float64 {
	if p.count == 0 {
		return nil
	}
	pw := 2 + len(p.cont)
	out := make([]float64, p.count*pw)
	active := make([]int, 0, len(p.groups))
	for pid := 0; pid < p.count; pid++ {
		active = p.active(pid, active[:0])
		p.fold(active, params.Theta, params.AInv, out[pid*pw:(pid+1)*pw])
	}
	return out
}

// active appends to dst the features pattern pid picks, in group order.
func (p *patterns) active(pid int, dst []int) []int {
	rest := pid
	for _, grp := range p.groups {
		if digit := rest % grp.Digits(); digit < len(grp.Features) {
			dst = append(dst, grp.Features[digit])
		}
		rest /= grp.Digits()
	}
	return dst
}

// fold stores in out (2+len(cont) values) θ_P, W_P and V_P,c of the arm
// whose θ and A⁻¹ (d·d, row-major) are th and m, for the pattern picking
// the features active. Every reader of folded values (the rows the writer
// stores, a local copy's) sums them here, in this order.
func (p *patterns) fold(active []int, th, m, out []float64) {
	d := p.d
	var t, w float64
	for _, pg := range active {
		t += th[pg]
		for _, ph := range active {
			w += m[pg*d+ph]
		}
	}
	out[0], out[1] = t, w
	for k, c := range p.cont {
		var v float64
		for _, pg := range active {
			v += m[c*d+pg]
		}
		out[2+k] = v
	}
}

// continuous returns the continuous values of an arm (the start of its
// f:<id> row): θ_c for each continuous c, then A⁻¹[c][c'] for c ≤ c', row
// by row; none without groups.
func (p *patterns) continuous(params linucb.Params) []float64 {
	if p.count == 0 {
		return nil
	}
	nc := len(p.cont)
	out := make([]float64, nc*(nc+3)/2)
	p.continuousInto(params.Theta, params.AInv, out)
	return out
}

// continuousInto stores the continuous values of the arm whose θ and A⁻¹
// are th and m in out (len(cont)·(len(cont)+3)/2 values).
func (p *patterns) continuousInto(th, m, out []float64) {
	o := 0
	for _, c := range p.cont {
		out[o] = th[c]
		o++
	}
	for a, c := range p.cont {
		for _, c2 := range p.cont[a:] {
			out[o] = m[c*p.d+c2]
			o++
		}
	}
}
