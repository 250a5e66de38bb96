package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// TestFoldedRows exercises the row layout of models with one-hot groups
// (c:<b>, p:<b>:<pattern>, f:<part>:<id>) for several counts of continuous
// features (the specialised loop for three, the general one for others) and
// of rows per product (one to twelve), over two column blocks, through
// writes that append arms and rewrite some in place: after each write, full
// scans and candidate lists of one-hot contexts equal the Go reference. Then
// the general layout's columns and rows are deleted: the same queries still
// work, so they ran on the folded rows. Last, the model is turned by hand
// into format 2 (one row f:<id> per product): it still serves, and the next
// write migrates it to format 3, leaving the rows of the arms it did not
// write as a format 3 write had made them.
func TestFoldedRows(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	layouts := []struct {
		name   string
		d      int
		groups []model.Group
	}{
		{"3 continuous", shopDim, shopGroups},
		{"none continuous", 7, []model.Group{{Features: []int{0, 1}}, {Features: []int{2, 3, 4}}, {Features: []int{5, 6}, Optional: true}}},
		{"1 continuous", 6, []model.Group{{Features: []int{1, 2, 3}, Optional: true}, {Features: []int{4, 5}}}},
		{"5 continuous", 9, []model.Group{{Features: []int{5, 6}}, {Features: []int{7, 8}, Optional: true}}},
	}
	for li, l := range layouts {
		t.Run(l.name, func(t *testing.T) {
			r := newRowsModel(t, c, fmt.Sprintf("rows%d", li), l.d, l.groups, uint64(li))
			rng, m, name, write, check := r.rng, r.m, r.m.name, r.write, r.check
			var first []string
			for a := 0; a < 700; a++ {
				first = append(first, fmt.Sprintf("p%d", a))
			}
			write(first)
			check("700 arms")
			var more []string
			for a := 700; a < store.DefaultBlock+76; a++ {
				more = append(more, fmt.Sprintf("p%d", a))
			}
			write(more)
			check("two blocks")
			var some []string
			for _, a := range rng.Perm(len(m.ids))[:60] {
				some = append(some, m.ids[a])
			}
			write(some)
			check("60 arms rewritten")
			// Every arm, as a trainer flushes when all products changed,
			// plus a new one whose id sorts first but whose index is last.
			write(append(slices.Clone(m.ids), "a-new"))
			check("every arm rewritten")

			// Format 2, made by hand: one row f:<id> per product, and block
			// rows c:<b> and p:<b>:<P> holding each arm's values together.
			// It serves (from the general layout), and a write of arms of
			// block 0 only migrates it: block 0's rows in the write's plan,
			// block 1's and every product's f: rows on their own.
			root := store.RootKey(name)
			parts := foldedRows(t, c, root)
			if len(parts) != len(m.ids) {
				t.Fatalf("%d products have folded rows, want %d", len(parts), len(m.ids))
			}
			toFormat2(t, c, root, l.d, l.groups, parts)
			check("format 2")
			some = some[:0]
			for _, a := range rng.Perm(700)[:30] { // the first 700 arms: block 0
				some = append(some, m.ids[a])
			}
			write(some)
			check("migrated to format 3")
			if f, err := c.Do(ctx, c.B().Hget().Key(root).Field("format").Build()).ToString(); err != nil || f != "3" {
				t.Fatalf("format after the write: %q, %v; want 3", f, err)
			}
			after := foldedRows(t, c, root)
			for id, rows := range parts {
				if !slices.Contains(some, id) && !slices.Equal(after[id], rows) {
					t.Fatalf("the rows of %s, not written, differ after the migration", id)
				}
			}

			// Without the general layout, one-hot contexts still score (those
			// with few non-zero entries may take the columns, being cheaper
			// there: not these): they ran on the rows, migrated or written.
			fields, err := c.Do(ctx, c.B().Hkeys().Key(root).Build()).AsStrSlice()
			if err != nil {
				t.Fatal(err)
			}
			var general []string
			for _, f := range fields {
				if strings.HasPrefix(f, "q:") || strings.HasPrefix(f, "t:") || strings.HasPrefix(f, "r:") {
					general = append(general, f)
				}
			}
			if err := c.Do(ctx, c.B().Hdel().Key(root).Field(general...).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			r.allSet = true
			check("folded rows only")
		})
	}
}

// rowsModel is a model with one-hot groups written arm by arm from random
// events, with its Go reference (TestFoldedRows, TestWriteWholeBlock).
type rowsModel struct {
	t        *testing.T
	c        rueidis.Client
	rng      *rand.Rand
	d        int
	groups   []model.Group
	ingroup  map[int]bool
	allSet   bool // contexts: every continuous feature non-zero, every group set
	m        *testModel
	arms     map[string]*linucb.Arm
	versions map[string]int64
}

func newRowsModel(t *testing.T, c rueidis.Client, name string, d int, groups []model.Group, seed uint64) *rowsModel {
	r := &rowsModel{t: t, c: c, rng: rand.New(rand.NewPCG(seed, 99)), d: d, groups: groups, ingroup: map[int]bool{},
		m:    &testModel{name: name, d: d, lambda: 1, byID: map[string]linucb.Params{}},
		arms: map[string]*linucb.Arm{}, versions: map[string]int64{}}
	for _, g := range groups {
		for _, f := range g.Features {
			r.ingroup[f] = true
		}
	}
	return r
}

// context returns a random context, one-hot in every group but optional ones.
func (r *rowsModel) context() []float64 {
	x := make([]float64, r.d)
	for i := range x {
		if !r.ingroup[i] && (r.allSet || r.rng.IntN(5) > 0) {
			x[i] = 1 - r.rng.Float64()
		}
	}
	for _, g := range r.groups {
		if !g.Optional || r.allSet || r.rng.IntN(4) > 0 {
			x[g.Features[r.rng.IntN(len(g.Features))]] = 1
		}
	}
	return x
}

// write folds a few random events into each of ids' arms and writes them in
// one call; new arms take their indexes in id order.
func (r *rowsModel) write(ids []string) {
	r.t.Helper()
	w := store.Write{Model: r.m.name, Features: featureNames(r.d), Groups: r.groups, Lambda: 1}
	var added []string
	for _, id := range ids {
		arm := r.arms[id]
		if arm == nil {
			arm = linucb.NewArm(r.d, 1)
			r.arms[id] = arm
			added = append(added, id)
		}
		for e := 0; e < 1+r.rng.IntN(20); e++ {
			if err := arm.Update(r.context(), float64(r.rng.IntN(2))); err != nil {
				r.t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			r.t.Fatal(err)
		}
		r.m.byID[id] = p
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Version: r.versions[id], Arm: arm, Params: p})
	}
	vers, err := w.Apply(context.Background(), r.c)
	if err != nil {
		r.t.Fatal(err)
	}
	for i, id := range ids {
		r.versions[id] = vers[i]
	}
	slices.Sort(added)
	r.m.ids = append(r.m.ids, added...)
	r.m.params = r.m.params[:0]
	for _, id := range r.m.ids {
		r.m.params = append(r.m.params, r.m.byID[id])
	}
}

// check compares 12 random queries (whole catalogue and candidate lists,
// some with exclusions) with the Go reference.
func (r *rowsModel) check(what string) {
	r.t.Helper()
	for i := 0; i < 12; i++ {
		q := store.Query{K: 1 + r.rng.IntN(8), Alpha: []float64{0, 0.1, 1}[i%3], Context: r.context()}
		if i%2 == 1 {
			for j := 0; j < 40; j++ {
				q.Candidates = append(q.Candidates, r.m.ids[r.rng.IntN(len(r.m.ids))])
			}
			q.Candidates = append(q.Candidates, "never-seen", q.Candidates[0])
		}
		if i%4 == 3 {
			ref := r.m.reference(q)
			q.Exclude = []string{ref[0].ID, "never-seen"}
		}
		got, err := store.Recommend(context.Background(), r.c, r.m.name, q)
		if err != nil {
			r.t.Fatalf("%s, query %d: %v", what, i, err)
		}
		sameItems(r.t, fmt.Sprintf("%s, query %d", what, i), got, r.m.reference(q))
	}
}

// toFormat2 rewrites the format 3 model at root (dimension d, groups) in
// format 2: parts (foldedRows) joined into one row f:<id> per product, the
// block rows c:+a: and p:+w: interleaved arm by arm into c: and p:, fpats
// gone.
func toFormat2(t *testing.T, c rueidis.Client, root string, d int, groups []model.Group, parts map[string][]string) {
	t.Helper()
	ctx := context.Background()
	nc := d
	for _, g := range groups {
		nc -= len(g.Features)
	}
	cont := 8 * (nc + nc*(nc+1)/2) // bytes of continuous values, at the start of every f: row
	cmds := rueidis.Commands{c.B().Hdel().Key(root).Field("fpats").Build(),
		c.B().Hset().Key(root).FieldValue().FieldValue("format", "2").Build()}
	for id, rows := range parts {
		whole := rows[0]
		for _, r := range rows[1:] {
			whole += r[cont:]
		}
		cmds = append(cmds, c.B().Hset().Key(root).FieldValue().FieldValue("f:"+id, whole).Build())
		for part := range rows {
			cmds = append(cmds, c.B().Hdel().Key(root).Field(fmt.Sprintf("f:%d:%s", part, id)).Build())
		}
	}
	all, err := c.Do(ctx, c.B().Hgetall().Key(root).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	// interleave joins slot i of x (wx bytes each) and of y (wy bytes each),
	// for n slots.
	interleave := func(x, y string, n, wx, wy int) string {
		var b strings.Builder
		for i := range n {
			b.WriteString(x[i*wx : (i+1)*wx])
			b.WriteString(y[i*wy : (i+1)*wy])
		}
		return b.String()
	}
	for f, tp := range all {
		rest, ok := strings.CutPrefix(f, "p:") // p:<b>:<P>, 8 bytes per arm
		if !ok {
			continue
		}
		blk, _, _ := strings.Cut(rest, ":")
		n := len(tp) / 8
		cmds = append(cmds, c.B().Hset().Key(root).FieldValue().
			FieldValue(f, interleave(tp, all["w:"+rest], n, 8, 8*(1+nc))).Build(),
			c.B().Hdel().Key(root).Field("w:"+rest).Build())
		if strings.HasSuffix(rest, ":0") {
			cmds = append(cmds, c.B().Hset().Key(root).FieldValue().
				FieldValue("c:"+blk, interleave(all["c:"+blk], all["a:"+blk], n, 8*nc, 8*nc*(nc+1)/2)).Build(),
				c.B().Hdel().Key(root).Field("a:"+blk).Build())
		}
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// foldedRows returns the rows f:<part>:<id> of the model at root, by product
// id, in part order. It fails on a row f:<id> (format 2) or a gap in the parts.
func foldedRows(t *testing.T, c rueidis.Client, root string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	all, err := c.Do(ctx, c.B().Hgetall().Key(root).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	byPart := map[string]map[int]string{}
	for f, v := range all {
		rest, ok := strings.CutPrefix(f, "f:")
		if !ok {
			continue
		}
		ps, id, ok := strings.Cut(rest, ":")
		part, err := strconv.Atoi(ps)
		if !ok || err != nil {
			t.Fatalf("field %s of %s is not a row f:<part>:<id>", f, root)
		}
		if byPart[id] == nil {
			byPart[id] = map[int]string{}
		}
		byPart[id][part] = v
	}
	out := map[string][]string{}
	for id, ps := range byPart {
		for part := range len(ps) {
			r, ok := ps[part]
			if !ok {
				t.Fatalf("product %s of %s has %d rows but no row %d", id, root, len(ps), part)
			}
			out[id] = append(out[id], r)
		}
	}
	return out
}

// TestWriteWholeBlock covers write.lua's shortcut: a call that writes
// exactly one block's arms, in slot order, stores each of that block's
// transposed values as sent; and its merge of many runs of arms value by
// value instead of run by run. Every arm's score is checked after each
// write (k = all arms), so a slot holding another arm's values would show.
func TestWriteWholeBlock(t *testing.T) {
	srv := redistest.Start(t)
	r := newRowsModel(t, srv.Client(), "whole", shopDim, shopGroups, 7)
	all := func(what string) {
		t.Helper()
		q := store.Query{K: len(r.m.ids), Alpha: 0.1, Context: r.context()}
		got, err := store.Recommend(context.Background(), r.c, r.m.name, q)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameItems(t, what, got, r.m.reference(q))
		r.check(what)
	}
	var ids []string
	for a := range store.DefaultBlock + 6 {
		ids = append(ids, fmt.Sprintf("a%04d", a))
	}
	r.write(ids) // block 0 is records 1..1024 in slot order, but the call also writes block 1
	all("one call, two blocks")
	r.write(ids[store.DefaultBlock:]) // exactly block 1, in slot order: the shortcut
	all("block 1 alone")
	r.write([]string{"b1", "b2"})
	r.write([]string{"b0"}) // block 1's slots: a1024…a1029, b1, b2, b0
	r.write(append(slices.Clone(ids[store.DefaultBlock:]), "b0", "b1", "b2"))
	all("block 1 alone, not in slot order")
	// Arms created one call at a time in the reverse of their ids' order:
	// written together (the writer sends records in id order), each is a
	// run of its own, so that every field of block 1 is merged value by
	// value rather than spliced run by run.
	var late []string
	for a := 29; a >= 0; a-- {
		id := fmt.Sprintf("r%02d", a)
		r.write([]string{id})
		late = append(late, id)
	}
	r.write(late)
	all("block 1 with 30 runs of one arm")
}
