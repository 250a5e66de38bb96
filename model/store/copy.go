package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model"
)

// ChangeRing is the number of change records a model keeps (root fields
// chg:0 … chg:63, docs/FORMAT.md "Change record").
const ChangeRing = 64

// Errors of a Copy, for errors.Is.
var (
	// ErrTooLarge reports a model with more products than a Copy may hold.
	ErrTooLarge = errors.New("model too large for a local copy")
	// ErrNotLocal reports a query a Copy does not answer itself (a context
	// of another length than the model's dimension: the scoring script's
	// error for it is the answer); send it to the script.
	ErrNotLocal = errors.New("query not answered from the local copy")
)

// Copy is a decoded in-memory copy of one model's serving parameters — each
// product's θ and A⁻¹, read from its arm hash — that answers Recommend in
// Go exactly as recommend.lua does: the same products in the same order,
// ties included (both rank with linucb.TopK's order), the same scores (the
// same sums in the same order; the script's x^0.5 and Go's square root may
// differ in the last bit) and the same BADARG errors. Refresh keeps it current by reloading
// only the products the model's change record lists. A Copy is safe for
// concurrent use.
type Copy struct {
	model string
	mu    sync.RWMutex
	st    *copyState // replaced by a full reload, patched by Refresh
}

// copyState is a Copy's contents.
type copyState struct {
	format  int
	d       int
	lambda  float64
	groupsJ string        // the groups as stored, to notice a recreated model
	groups  []model.Group // nil without groups
	cont    []int         // the continuous features (in no group), in index order
	ids     []string      // by arm index
	index   map[string]int
	// Arm i's θ at theta[i·d:], its A⁻¹ (row-major) at ainv[i·d·d:]: apart,
	// so that the pass computing every arm's mean reads θs only.
	theta, ainv []float64

	// With one-hot groups: the writer's folded values (docs/FORMAT.md),
	// summed by the same code (patterns.fold), laid out as the script's
	// block rows, means apart from the rest: each arm's θ_c at
	// ctheta[i·nc:] and A⁻¹ over the continuous features at cainv[i·ntri:],
	// and per pattern, built on its first request (foldedFor), each arm's
	// θ_P and its W_P, V_P,c. The pass computing every arm's mean reads
	// nc + 1 contiguous values per arm.
	pats          *patterns
	ctheta, cainv []float64
	folded        []atomic.Pointer[foldedRows]

	// What the root said when the copy was last brought up to date.
	wseq    string // "" if the model has no change record
	updated string // updated_ms
}

// rootState is the part of the root a Copy polls.
type rootState struct {
	format, dim, lambda, arms, groups, wseq, updated string
	exists                                           bool
}

func readRootState(ctx context.Context, c rueidis.Client, root string) (rootState, error) {
	vals, err := c.Do(ctx, c.B().Hmget().Key(root).Field("format", "dim", "lambda", "arms", "groups", "wseq", "updated_ms").Build()).ToArray()
	if err != nil {
		return rootState{}, fmt.Errorf("read %s: %w", root, err)
	}
	var r rootState
	s := func(i int) string { v, _ := vals[i].ToString(); return v }
	r.exists = !vals[0].IsNil()
	r.format, r.dim, r.lambda, r.arms, r.groups, r.wseq, r.updated = s(0), s(1), s(2), s(3), s(4), s(5), s(6)
	if r.groups == "" {
		r.groups = "[]"
	}
	return r, nil
}

// LoadCopy reads the whole of model into a new Copy. It returns ErrNoModel
// if there is none, ErrTooLarge if it has more than maxArms products and
// ErrBadModel if its metadata or an arm's θ or A⁻¹ is malformed.
func LoadCopy(ctx context.Context, c rueidis.Client, model string, maxArms int) (*Copy, error) {
	cp := &Copy{model: model}
	st, err := cp.load(ctx, c, maxArms)
	if err != nil {
		return nil, err
	}
	cp.st = st
	return cp, nil
}

// load reads the whole model.
func (cp *Copy) load(ctx context.Context, c rueidis.Client, maxArms int) (*copyState, error) {
	root := RootKey(cp.model)
	rs, err := readRootState(ctx, c, root)
	if err != nil {
		return nil, err
	}
	st, n, err := newCopyState(root, rs, maxArms)
	if err != nil {
		return nil, err
	}
	if st.ids, err = ReadProducts(ctx, c, cp.model, n); err != nil {
		return nil, err
	}
	st.index = make(map[string]int, n)
	for i, id := range st.ids {
		st.index[id] = i
	}
	st.theta, st.ainv = make([]float64, n*st.d), make([]float64, n*st.d*st.d)
	if err := cp.readArms(ctx, c, st.d, st.ids, st.theta, st.ainv); err != nil {
		return nil, err
	}
	if st.pats != nil {
		nc := len(st.cont)
		st.ctheta, st.cainv = make([]float64, n*nc), make([]float64, n*(st.ncv()-nc))
		for i := range n {
			st.setContinuous(i)
		}
	}
	return st, nil
}

// newCopyState checks the root's metadata as the scoring script does and
// returns an empty state for it and its number of arms.
func newCopyState(root string, rs rootState, maxArms int) (*copyState, int, error) {
	if !rs.exists {
		return nil, 0, fmt.Errorf("%w: no model at %s", ErrNoModel, root)
	}
	format, err1 := strconv.Atoi(rs.format)
	d, err2 := strconv.Atoi(rs.dim)
	lambda, err3 := strconv.ParseFloat(rs.lambda, 64)
	n, err4 := strconv.Atoi(rs.arms)
	if rs.arms == "" {
		n, err4 = 0, nil
	}
	if err := errors.Join(err1, err2, err3, err4); err != nil || format < OldestFormat || format > FormatVersion ||
		d < 1 || d > MaxDim || !(lambda > 0) || lambda > maxFinite || n < 0 {
		return nil, 0, fmt.Errorf("%w: %s has malformed or unknown metadata (format %q, dim %q, lambda %q, arms %q)", ErrBadModel, root, rs.format, rs.dim, rs.lambda, rs.arms)
	}
	if n > maxArms {
		return nil, 0, fmt.Errorf("%w: %s has %d products, a copy may hold %d", ErrTooLarge, root, n, maxArms)
	}
	st := &copyState{format: format, d: d, lambda: lambda, groupsJ: rs.groups, wseq: rs.wseq, updated: rs.updated}
	if err := json.Unmarshal([]byte(rs.groups), &st.groups); err != nil {
		return nil, 0, fmt.Errorf("%w: %s has malformed groups: %v", ErrBadModel, root, err)
	}
	if len(st.groups) == 0 {
		st.groups = nil
	}
	ingroup := make([]bool, d)
	for _, g := range st.groups {
		if len(g.Features) == 0 {
			return nil, 0, fmt.Errorf("%w: %s has an empty group", ErrBadModel, root)
		}
		for _, f := range g.Features {
			if f < 0 || f >= d || ingroup[f] {
				return nil, 0, fmt.Errorf("%w: %s has malformed groups", ErrBadModel, root)
			}
			ingroup[f] = true
		}
	}
	for i := range d {
		if !ingroup[i] {
			st.cont = append(st.cont, i)
		}
	}
	if st.groups != nil {
		pats, err := newPatterns(d, st.groups)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %s: %v", ErrBadModel, root, err)
		}
		st.pats = pats
		st.folded = make([]atomic.Pointer[foldedRows], pats.count)
	}
	return st, n, nil
}

const maxFinite = 1.7976931348623157e308

// readArms reads θ and A⁻¹ of the arms ids into theta and ainv (arm q at
// theta[q·d:] and ainv[q·d·d:]): one pipelined HMGET per arm, 1,000 per
// round trip.
func (cp *Copy) readArms(ctx context.Context, c rueidis.Client, d int, ids []string, theta, ainv []float64) error {
	const chunk = 1000
	cmds := make(rueidis.Commands, 0, min(chunk, len(ids)))
	for lo := 0; lo < len(ids); lo += chunk {
		part := ids[lo:min(lo+chunk, len(ids))]
		cmds = cmds[:0]
		for _, id := range part {
			cmds = append(cmds, c.B().Hmget().Key(ArmKey(cp.model, id)).Field("theta", "ainv").Build())
		}
		for j, res := range doReads(ctx, c, cmds) {
			q := lo + j
			vals, err := res.ToArray()
			if err != nil {
				return fmt.Errorf("read arm %s of %s: %w", ids[q], cp.model, err)
			}
			th, err1 := vals[0].ToString()
			ai, err2 := vals[1].ToString()
			if err1 != nil || err2 != nil || !decodeFloatsInto(theta[q*d:(q+1)*d], th) || !decodeFloatsInto(ainv[q*d*d:(q+1)*d*d], ai) {
				return fmt.Errorf("%w: arm %s of %s has no θ and A⁻¹ of dimension %d", ErrBadModel, ids[q], RootKey(cp.model), d)
			}
		}
	}
	return nil
}

// Refreshed says what a Refresh did.
type Refreshed struct {
	Full bool // the whole model was reloaded
	Arms int  // the products reloaded
}

// Refresh brings the copy up to date with the model: nothing if the model
// has not been written since, else the products the change record lists
// (docs/FORMAT.md), or the whole model when the record cannot tell (more
// than ChangeRing writes since, a writer without change records, a model
// recreated). When it returns nil, the copy holds every write that
// finished before Refresh was called. Errors as LoadCopy's; the copy is
// unchanged after one.
func (cp *Copy) Refresh(ctx context.Context, c rueidis.Client, maxArms int) (Refreshed, error) {
	root := RootKey(cp.model)
	rs, err := readRootState(ctx, c, root)
	if err != nil {
		return Refreshed{}, err
	}
	cp.mu.RLock()
	old := cp.st
	cp.mu.RUnlock()
	if !rs.exists {
		return Refreshed{}, fmt.Errorf("%w: no model at %s", ErrNoModel, root)
	}
	if rs.wseq == old.wseq && rs.updated == old.updated && rs.format == strconv.Itoa(old.format) && rs.arms == strconv.Itoa(len(old.ids)) {
		return Refreshed{}, nil
	}
	changed, ok, err := cp.changes(ctx, c, rs, old)
	if err != nil {
		return Refreshed{}, err
	}
	if !ok {
		st, err := cp.load(ctx, c, maxArms)
		if err != nil {
			return Refreshed{}, err
		}
		// Fold the patterns asked for before here, not on the next
		// request of each.
		if st.pats != nil && old.pats != nil && len(st.folded) == len(old.folded) {
			for pid := range old.folded {
				if old.folded[pid].Load() != nil {
					st.foldedFor(pid)
				}
			}
		}
		cp.mu.Lock()
		cp.st = st
		cp.mu.Unlock()
		return Refreshed{Full: true, Arms: len(st.ids)}, nil
	}
	// The arms of the writes since: new ones get their ids first.
	n, _ := strconv.Atoi(rs.arms)
	if n > maxArms {
		return Refreshed{}, fmt.Errorf("%w: %s has %d products, a copy may hold %d", ErrTooLarge, root, n, maxArms)
	}
	ids := old.ids
	if n > len(old.ids) {
		newIDs, err := readProductRange(ctx, c, cp.model, len(old.ids), n)
		if err != nil {
			return Refreshed{}, err
		}
		ids = append(ids[:len(ids):len(ids)], newIDs...)
		for i := len(old.ids); i < n; i++ {
			changed[i] = struct{}{}
		}
	}
	idxs := make([]int, 0, len(changed))
	sub := make([]string, 0, len(changed))
	for i := range changed {
		idxs = append(idxs, i)
		sub = append(sub, ids[i])
	}
	d := old.d
	theta, ainv := make([]float64, len(idxs)*d), make([]float64, len(idxs)*d*d)
	if err := cp.readArms(ctx, c, d, sub, theta, ainv); err != nil {
		return Refreshed{}, err
	}
	format, _ := strconv.Atoi(rs.format)
	cp.mu.Lock()
	st := cp.st
	if st != old { // a concurrent Refresh replaced it: let the next poll redo this
		cp.mu.Unlock()
		return Refreshed{}, nil
	}
	for i := len(st.ids); i < n; i++ {
		st.index[ids[i]] = i
	}
	st.ids = ids
	st.theta = grow(st.theta, n*d)
	st.ainv = grow(st.ainv, n*d*d)
	for q, i := range idxs {
		copy(st.theta[i*d:(i+1)*d], theta[q*d:(q+1)*d])
		copy(st.ainv[i*d*d:(i+1)*d*d], ainv[q*d*d:(q+1)*d*d])
	}
	if st.pats != nil {
		nc := len(st.cont)
		st.ctheta, st.cainv = grow(st.ctheta, n*nc), grow(st.cainv, n*(st.ncv()-nc))
		for _, i := range idxs {
			st.setContinuous(i)
		}
		var active []int
		for pid := range st.folded {
			fp := st.folded[pid].Load()
			if fp == nil {
				continue
			}
			f := &foldedRows{tp: grow(fp.tp, n), wv: grow(fp.wv, n*(1+nc))}
			active = st.pats.active(pid, active[:0])
			for _, i := range idxs {
				st.fold(f, active, i)
			}
			st.folded[pid].Store(f)
		}
	}
	st.format, st.wseq, st.updated = format, rs.wseq, rs.updated
	cp.mu.Unlock()
	return Refreshed{Arms: len(idxs)}, nil
}

// ncv is the number of continuous values per arm.
func (st *copyState) ncv() int { nc := len(st.cont); return nc * (nc + 3) / 2 }

// foldedRows are every arm's folded values for one pattern: θ_P at tp[i],
// W_P and V_P,c at wv[i·(1+nc):].
type foldedRows struct{ tp, wv []float64 }

// foldedFor returns every arm's folded values for pattern pid, computing
// them on the first call for the pattern. The caller holds the Copy's read
// lock; concurrent first calls compute the same values, one is kept.
func (st *copyState) foldedFor(pid int) *foldedRows {
	if fp := st.folded[pid].Load(); fp != nil {
		return fp
	}
	n, nc := len(st.ids), len(st.cont)
	f := &foldedRows{tp: make([]float64, n), wv: make([]float64, n*(1+nc))}
	active := st.pats.active(pid, nil)
	for i := range n {
		st.fold(f, active, i)
	}
	if !st.folded[pid].CompareAndSwap(nil, f) {
		return st.folded[pid].Load()
	}
	return f
}

// fold stores arm i's folded values for the pattern picking active in f.
func (st *copyState) fold(f *foldedRows, active []int, i int) {
	d, nc := st.d, len(st.cont)
	var buf [2 + MaxDim]float64
	out := buf[:2+nc]
	st.pats.fold(active, st.theta[i*d:(i+1)*d], st.ainv[i*d*d:(i+1)*d*d], out)
	f.tp[i] = out[0]
	copy(f.wv[i*(1+nc):(i+1)*(1+nc)], out[1:])
}

// setContinuous stores arm i's continuous values in ctheta and cainv.
func (st *copyState) setContinuous(i int) {
	d, nc, ntri := st.d, len(st.cont), st.ncv()-len(st.cont)
	var buf [MaxDim * (MaxDim + 3) / 2]float64
	out := buf[:nc+ntri]
	st.pats.continuousInto(st.theta[i*d:(i+1)*d], st.ainv[i*d*d:(i+1)*d*d], out)
	copy(st.ctheta[i*nc:(i+1)*nc], out[:nc])
	copy(st.cainv[i*ntri:(i+1)*ntri], out[nc:])
}

// grow returns v lengthened to n, with room for a quarter more when it
// must be copied (new products arrive a few at a time).
func grow(v []float64, n int) []float64 {
	if n <= len(v) {
		return v
	}
	if n <= cap(v) {
		return v[:n]
	}
	g := make([]float64, n, n+n/4)
	copy(g, v)
	return g
}

// changes returns the indexes of the arms written since old, from the
// change records, and false if they cannot tell (then the whole model must
// be reloaded).
func (cp *Copy) changes(ctx context.Context, c rueidis.Client, rs rootState, old *copyState) (map[int]struct{}, bool, error) {
	if rs.dim != strconv.Itoa(old.d) || rs.groups != old.groupsJ || rs.lambda == "" || rs.wseq == "" || old.wseq == "" {
		return nil, false, nil
	}
	if l, err := strconv.ParseFloat(rs.lambda, 64); err != nil || l != old.lambda {
		return nil, false, nil
	}
	now, err1 := strconv.ParseInt(rs.wseq, 10, 64)
	was, err2 := strconv.ParseInt(old.wseq, 10, 64)
	n, err3 := strconv.Atoi(rs.arms)
	if err1 != nil || err2 != nil || err3 != nil || now <= was || now-was > ChangeRing || n < len(old.ids) {
		return nil, false, nil
	}
	fields := make([]string, 0, now-was)
	for w := was + 1; w <= now; w++ {
		fields = append(fields, "chg:"+strconv.FormatInt(w%ChangeRing, 10))
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(RootKey(cp.model)).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, false, fmt.Errorf("read the change records of %s: %w", RootKey(cp.model), err)
	}
	changed := map[int]struct{}{}
	for q, v := range vals {
		rec, _ := v.ToString()
		head, list, ok := strings.Cut(rec, ":")
		if !ok || head != strconv.FormatInt(was+1+int64(q), 10) {
			return nil, false, nil // overwritten by a later write, or damaged
		}
		for _, s := range strings.Split(list, ",") {
			if s == "" {
				continue
			}
			i, err := strconv.Atoi(s)
			if err != nil || i < 0 || i >= n {
				return nil, false, nil
			}
			changed[i] = struct{}{}
		}
	}
	return changed, true, nil
}

// readProductRange returns the ids of arms lo..hi-1.
func readProductRange(ctx context.Context, c rueidis.Client, model string, lo, hi int) ([]string, error) {
	fields := make([]string, 0, hi-lo)
	for i := lo; i < hi; i++ {
		fields = append(fields, "id:"+strconv.Itoa(i))
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(RootKey(model)).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("read product ids %d..%d of %s: %w", lo, hi-1, model, err)
	}
	ids := make([]string, len(vals))
	for q, v := range vals {
		if ids[q], err = v.ToString(); err != nil || ids[q] == "" {
			return nil, fmt.Errorf("%w: %s has no id for arm %d", ErrBadModel, RootKey(model), lo+q)
		}
	}
	return ids, nil
}

// Model returns the name of the copied model.
func (cp *Copy) Model() string { return cp.model }

// Products returns the number of products in the copy.
func (cp *Copy) Products() int {
	cp.mu.RLock()
	defer cp.mu.RUnlock()
	return len(cp.st.ids)
}

// Bytes estimates the memory the copy holds: its parameters, the folded
// values of the patterns asked for so far, ids and index.
func (cp *Copy) Bytes() int {
	cp.mu.RLock()
	defer cp.mu.RUnlock()
	b := 8 * (cap(cp.st.theta) + cap(cp.st.ainv) + cap(cp.st.ctheta) + cap(cp.st.cainv))
	for pid := range cp.st.folded {
		if fp := cp.st.folded[pid].Load(); fp != nil {
			b += 8 * (cap(fp.tp) + cap(fp.wv))
		}
	}
	for _, id := range cp.st.ids {
		b += 2*len(id) + 16 + 16 + 8 + 8 // the string, its header in ids and in the index, the index's value and overhead
	}
	return b
}
