package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
)

// Guard is a compare-and-set condition on a root-hash field, checked by the
// write script before it writes anything. An empty Want means the field must
// not exist.
type Guard struct {
	Field, Want string
}

// Field is a root-hash field set by a write, atomically with the arms.
type Field struct {
	Name, Value string
}

// ArmWrite is the new state of one arm.
type ArmWrite struct {
	ID      string        // product id
	Version int64         // the arm version the state was derived from (0: new arm)
	Arm     *linucb.Arm   // A, b, n
	Params  linucb.Params // θ and A⁻¹ of Arm
}

// Write is one atomic change to a model: new arm states, root fields to set
// and the conditions under which to apply them.
type Write struct {
	Model    string
	Features []string // feature names; their number is the dimension
	// Groups are the model's one-hot groups (docs/FORMAT.md). They let the
	// scoring script read fewer columns. They are fixed when the model is
	// created; nil means none.
	Groups  []model.Group
	Lambda  float64
	Events  int64   // events this write folds in, added to the model's count
	Rewards float64 // the sum of their rewards, added to the model's
	Invalid int64   // events dead-lettered since the writer's last write, added to the model's count
	Guards  []Guard
	Set     []Field
	Arms    []ArmWrite
	Now     time.Time // stored as updated_ms; zero means time.Now()
}

// Apply runs the write script: either everything in w is stored or, on error,
// nothing. It returns the arms' new versions. It fails with ErrConflict if a
// guard or an arm version does not match, and ErrBadModel if the stored
// model's dimension, λ or features differ from w's.
func (w *Write) Apply(ctx context.Context, c rueidis.Client) ([]int64, error) {
	d := len(w.Features)
	if d < 1 || d > MaxDim {
		return nil, fmt.Errorf("%w: dimension %d outside 1..%d", ErrBadArg, d, MaxDim)
	}
	if !(w.Lambda > 0) || math.IsInf(w.Lambda, 0) {
		return nil, fmt.Errorf("%w: lambda %v is not positive and finite", ErrBadArg, w.Lambda)
	}
	features, err := json.Marshal(w.Features)
	if err != nil {
		return nil, fmt.Errorf("encode features: %w", err)
	}
	pats, err := newPatterns(d, w.Groups)
	if err != nil {
		return nil, err
	}
	now := w.Now
	if now.IsZero() {
		now = time.Now()
	}
	keys := make([]string, 0, 1+len(w.Arms))
	keys = append(keys, RootKey(w.Model))
	args := make([]string, 0, 13+2*len(w.Guards)+2*len(w.Set)+9*len(w.Arms)+d+d*(d+1)/2+1+pats.count)
	args = append(args,
		strconv.Itoa(FormatVersion), strconv.Itoa(d), FormatFloat(w.Lambda), string(features),
		pats.json, strconv.Itoa(DefaultBlock), strconv.FormatInt(now.UnixMilli(), 10), strconv.FormatInt(w.Events, 10),
		FormatFloat(w.Rewards), strconv.FormatInt(w.Invalid, 10), strconv.Itoa(len(w.Guards)))
	for _, g := range w.Guards {
		args = append(args, g.Field, g.Want)
	}
	args = append(args, strconv.Itoa(len(w.Set)))
	for _, f := range w.Set {
		args = append(args, f.Name, f.Value)
	}
	var buf []byte
	blob := func(v []float64) string {
		buf = AppendFloats(buf[:0], v)
		return string(buf)
	}
	// The arms go in product-id order. An arm gets its index (its slot in
	// the columns and rows) from the write that creates it, in this order,
	// so a later write of the same arms finds them in slot order, and the
	// script copies the transposed values below as runs of arms instead of
	// one by one.
	order := make([]int, len(w.Arms))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(w.Arms[i].ID, w.Arms[j].ID) })
	m, ncol, nc, pw := len(w.Arms), d+d*(d+1)/2, len(pats.cont), 2+len(pats.cont)
	colsT := make([]float64, ncol*m)
	// The block rows, transposed: θ_c and A⁻¹ over the continuous features
	// of each arm; per pattern, θ_P of each arm and W_P, V_P,c of each arm.
	var thetaCT, ainvCT, thetaPT, restPT, row []float64
	if pats.count > 0 {
		thetaPT = make([]float64, pats.count*m)
		restPT = make([]float64, pats.count*(pw-1)*m)
	}
	for q, i := range order {
		a := w.Arms[i]
		if a.Arm.Dim() != d {
			panic(fmt.Sprintf("store: arm %s has dimension %d, write has %d", a.ID, a.Arm.Dim(), d))
		}
		row = append(row[:0], a.Params.Theta...)
		for r := 0; r < d; r++ {
			row = append(row, a.Params.AInv[r*d+r:(r+1)*d]...)
		}
		for c, v := range row {
			colsT[c*m+q] = v
		}
		var frow []float64
		if pats.count > 0 {
			frow = pats.continuous(a.Params)
			thetaCT = append(thetaCT, frow[:nc]...)
			ainvCT = append(ainvCT, frow[nc:]...)
			pv := pats.values(a.Params)
			for pid := 0; pid < pats.count; pid++ {
				thetaPT[pid*m+q] = pv[pid*pw]
				copy(restPT[(pid*m+q)*(pw-1):(pid*m+q+1)*(pw-1)], pv[pid*pw+1:(pid+1)*pw])
			}
			frow = append(frow, pv...)
		}
		keys = append(keys, ArmKey(w.Model, a.ID))
		args = append(args, a.ID, strconv.FormatInt(a.Version, 10), strconv.FormatInt(a.Arm.N(), 10), FormatFloat(a.Arm.Rewards()),
			blob(a.Arm.A()), blob(a.Arm.B()), blob(row), blob(a.Params.AInv), blob(frow))
	}
	// One blob per field of a block (docs in lua/write.lua): no single
	// argument grows past m times a row.
	for c := range ncol {
		args = append(args, blob(colsT[c*m:(c+1)*m]))
	}
	if pats.count > 0 {
		args = append(args, blob(thetaCT), blob(ainvCT))
		for pid := range pats.count {
			args = append(args, blob(thetaPT[pid*m:(pid+1)*m]), blob(restPT[pid*m*(pw-1):(pid+1)*m*(pw-1)]))
		}
	}
	res, err := lua.Write.Exec(ctx, c, keys, args).AsIntSlice()
	if err != nil {
		return nil, fmt.Errorf("write model %s: %w", w.Model, ScriptError(err))
	}
	if len(res) != len(order) {
		return nil, fmt.Errorf("write model %s: %d versions for %d arms", w.Model, len(res), len(order))
	}
	vers := make([]int64, len(res))
	for q, i := range order {
		vers[i] = res[q]
	}
	return vers, nil
}

// StoredArm is an arm's state as stored in Redis.
type StoredArm struct {
	ID      string
	Version int64 // 0 if the arm is not stored
	Arm     *linucb.Arm
}

// ReadArms reads the stored state of the given products; an arm not in Redis
// comes back as a prior arm (A = λI) with version 0. It costs one pipelined
// round trip.
func ReadArms(ctx context.Context, c rueidis.Client, model string, d int, lambda float64, ids []string) ([]StoredArm, error) {
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.B().Hmget().Key(ArmKey(model, id)).Field("ver", "n", "a", "b", "rewards").Build()
	}
	out := make([]StoredArm, len(ids))
	for i, res := range doReads(ctx, c, cmds) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("read arm %s: %w", ids[i], err)
		}
		out[i].ID = ids[i]
		if vals[0].IsNil() {
			out[i].Arm = linucb.NewArm(d, lambda)
			continue
		}
		arm, ver, err := decodeArm(d, vals)
		if err != nil {
			return nil, fmt.Errorf("arm %s of %s: %w", ids[i], model, err)
		}
		out[i].Arm, out[i].Version = arm, ver
	}
	return out, nil
}

func decodeArm(d int, vals []rueidis.RedisMessage) (*linucb.Arm, int64, error) {
	var s [5]string
	for i := range s {
		var err error
		if s[i], err = vals[i].ToString(); err != nil {
			return nil, 0, fmt.Errorf("%w: field %d: %v", ErrBadModel, i, err)
		}
	}
	ver, err1 := strconv.ParseInt(s[0], 10, 64)
	n, err2 := strconv.ParseInt(s[1], 10, 64)
	a, err3 := Floats([]byte(s[2]))
	b, err4 := Floats([]byte(s[3]))
	r, err5 := strconv.ParseFloat(s[4], 64)
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrBadModel, err)
		}
	}
	if len(a) != d*d || len(b) != d {
		return nil, 0, fmt.Errorf("%w: A has %d values and b %d for dimension %d", ErrBadModel, len(a), len(b), d)
	}
	arm, err := linucb.Restore(d, a, b, n, r)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrBadModel, err)
	}
	return arm, ver, nil
}
