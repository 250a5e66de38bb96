package store_test

import (
	"context"
	"errors"
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

// The reference shop's layout: 3 continuous features in (0, 1], then the
// one-hot groups gender (2), traffic source (5), time of day (3, optional:
// night sets none), weekday/weekend (2).
const shopDim = 15

// shopGroups are the one-hot groups of the reference shop's layout.
var shopGroups = []model.Group{
	{Features: []int{3, 4}}, {Features: []int{5, 6, 7, 8, 9}},
	{Features: []int{10, 11, 12}, Optional: true}, {Features: []int{13, 14}},
}

// newShopContext returns a random context of the reference shop's layout,
// one-hot in every group.
func newShopContext(rng *rand.Rand) []float64 {
	x := make([]float64, shopDim)
	x[0], x[1], x[2] = 1-rng.Float64(), 1-rng.Float64(), 1-rng.Float64()
	for _, g := range shopGroups {
		x[g.Features[rng.IntN(len(g.Features))]] = 1
	}
	return x
}

// TestOneHotFastPath scores a model with one-hot groups. Contexts that are
// one-hot in every group take the folded pattern columns, the others the
// general columns; both must equal the dense Go reference. To prove which
// path ran, a column that only the general path reads is then removed:
// one-hot contexts still work, the others fail with BADMODEL.
func TestOneHotFastPath(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(21, 22))
	const d, n = 15, 300
	m := &testModel{name: "shop", d: d, lambda: 1, byID: map[string]linucb.Params{}}
	w := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: 1}
	for a := 0; a < n; a++ {
		arm := linucb.NewArm(d, 1)
		for e := 0; e < rng.IntN(60); e++ {
			if err := arm.Update(newShopContext(rng), float64(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("dish-%d", a)
		m.ids, m.params, m.byID[id] = append(m.ids, id), append(m.params, p), p
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	meta, err := store.ReadMeta(ctx, c, m.name)
	if err != nil || fmt.Sprint(meta.Groups) != fmt.Sprint(shopGroups) {
		t.Fatalf("meta groups %v, %v", meta.Groups, err)
	}

	var oneHot, other [][]float64
	for i := 0; i < 20; i++ {
		x := newShopContext(rng)
		if i%4 == 0 {
			x[1] = 0 // a continuous feature at zero
		}
		if i%3 == 1 {
			x[10], x[11], x[12] = 0, 0, 0 // night: the optional group's "none"
		}
		oneHot = append(oneHot, x)
		y := newShopContext(rng)
		switch i % 3 {
		case 0:
			y[3], y[4] = 1, 1 // two genders
		case 1:
			y[13], y[14] = 0, 0 // no weekday flag
		default:
			y[11] = 0.5 // not exactly 1 (and two entries in the group)
		}
		other = append(other, y)
	}
	check := func(xs [][]float64, what string) {
		t.Helper()
		for i, x := range xs {
			q := store.Query{K: 5, Alpha: []float64{0.1, 1}[i%2], Context: x}
			if i%5 == 4 {
				q.Exclude = []string{m.reference(q)[0].ID}
			}
			got, err := store.Recommend(ctx, c, m.name, q)
			if err != nil {
				t.Fatalf("%s %d: %v", what, i, err)
			}
			sameItems(t, fmt.Sprintf("%s %d", what, i), got, m.reference(q))
		}
	}
	check(oneHot, "one-hot context")
	check(other, "other context")

	// The groups packed for the script (gmap, docs/FORMAT.md): their count,
	// then per group its size, 1 if optional and its features, LE uint16.
	root := store.RootKey(m.name)
	hget := func(f string) string {
		t.Helper()
		v, err := c.Do(ctx, c.B().Hget().Key(root).Field(f).Build()).ToString()
		if err != nil {
			t.Fatalf("HGET %s: %v", f, err)
		}
		return v
	}
	hset := func(f, v string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Hset().Key(root).FieldValue().FieldValue(f, v).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	packed := func(vs ...int) string {
		var b []byte
		for _, v := range vs {
			b = append(b, byte(v), byte(v>>8))
		}
		return string(b)
	}
	wantGmap := packed(4, 2, 0, 3, 4, 5, 0, 5, 6, 7, 8, 9, 3, 1, 10, 11, 12, 2, 0, 13, 14)
	if g := hget("gmap"); g != wantGmap {
		t.Fatalf("gmap %x, want %x", g, wantGmap)
	}
	// The script reads gmap, not the JSON: with the JSON spoilt, answers
	// are unchanged.
	groupsJSON := hget("groups")
	hset("groups", "not json")
	check(oneHot, "one-hot context, groups from gmap only")
	check(other, "other context, groups from gmap only")
	hset("groups", groupsJSON)
	// A model without gmap (created by an older writer) is read from the
	// JSON; the next write adds gmap.
	if err := c.Do(ctx, c.B().Hdel().Key(root).Field("gmap").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check(oneHot, "one-hot context without gmap")
	check(other, "other context without gmap")
	empty := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: 1}
	if _, err := empty.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	if g := hget("gmap"); g != wantGmap {
		t.Fatalf("gmap after a write %x, want %x", g, wantGmap)
	}
	// A malformed gmap is a BADMODEL for every context, never a wrong answer.
	for _, bad := range []string{"abc", packed(5, 2, 0, 3, 4), packed(1, 2, 0, 3, 15), packed(1, 2, 0, 3, 4, 7), packed(1, 9, 0, 3, 4), strings.Repeat("\x01\x00", 10000)} {
		hset("gmap", bad)
		for _, x := range [][]float64{oneHot[0], other[0]} {
			if _, err := store.Recommend(ctx, c, m.name, store.Query{K: 5, Alpha: 0.1, Context: x}); !errors.Is(err, store.ErrBadModel) {
				t.Fatalf("gmap %x: err %v, want ErrBadModel", bad, err)
			}
		}
	}
	hset("gmap", wantGmap)

	// gender × source: read by the general path only.
	var gxs []string
	for i := 3; i <= 4; i++ {
		for j := 5; j <= 9; j++ {
			gxs = append(gxs, fmt.Sprintf("q:0:%d:%d", i, j))
		}
	}
	if err := c.Do(ctx, c.B().Hdel().Key(root).Field(gxs...).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check(oneHot, "one-hot context without general group columns")
	for i, x := range other {
		if i%3 != 0 {
			continue
		}
		_, err := store.Recommend(ctx, c, m.name, store.Query{K: 5, Alpha: 0.1, Context: x})
		if !errors.Is(err, store.ErrBadModel) {
			t.Fatalf("other context %d without its columns: err %v, want ErrBadModel (the general path)", i, err)
		}
	}

	// Groups are part of the model's identity.
	arm := linucb.NewArm(d, 1)
	p, _ := arm.Solve()
	bad := store.Write{Model: m.name, Features: featureNames(d), Lambda: 1, Arms: []store.ArmWrite{{ID: "new", Arm: arm, Params: p}}}
	if _, err := bad.Apply(ctx, c); !errors.Is(err, store.ErrBadModel) {
		t.Fatalf("write without the model's groups: %v, want ErrBadModel", err)
	}
	for _, groups := range [][]model.Group{{{Features: []int{3, 3}}}, {{Features: []int{15}}}, {{}}, {{Features: []int{-1, 2}}}} {
		bad := store.Write{Model: "g2", Features: featureNames(d), Groups: groups, Lambda: 1, Arms: []store.ArmWrite{{ID: "new", Arm: arm, Params: p}}}
		if _, err := bad.Apply(ctx, c); !errors.Is(err, store.ErrBadArg) {
			t.Fatalf("groups %v: %v, want ErrBadArg", groups, err)
		}
	}
}

// TestPruningBound checks the scan's pruning of arms by the bound
// score <= mean + alpha |x| / sqrt(lambda) where it matters: fresh arms
// (A = lambda I) score exactly the bound and tie with one another, and when
// rewarded arms come first, fresh arms later in the scan win on their
// exploration bonus alone — pruned with a bound any smaller (without the
// lambda, say), they would be lost. Models of 10 trained and 30 fresh arms,
// interleaved or trained first, at two lambdas, are scored at alphas from 0
// to 3, with k reaching into the ties and with exclusions; the top-k must
// equal the reference, tie order included. Candidate lists (all arms in
// the scan's order, or 25 in a random order) prune by the same bound.
func TestPruningBound(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(31, 32))
	const d, n = shopDim, 40
	for _, lambda := range []float64{1, 0.25} {
		for _, first := range []bool{false, true} {
			m := &testModel{name: fmt.Sprintf("tight-%v-%v", lambda, first), d: d, lambda: lambda, byID: map[string]linucb.Params{}}
			w := store.Write{Model: m.name, Features: featureNames(d), Groups: shopGroups, Lambda: lambda}
			for a := 0; a < n; a++ {
				arm := linucb.NewArm(d, lambda)
				trained, reward := a%4 == 1, float64(a%8/4)
				if first {
					trained, reward = a < 10, 1
				}
				for e := 0; trained && e < 30; e++ {
					if err := arm.Update(newShopContext(rng), reward); err != nil {
						t.Fatal(err)
					}
				}
				p, err := arm.Solve()
				if err != nil {
					t.Fatal(err)
				}
				id := fmt.Sprintf("p%02d", a) // product-id order is creation order
				m.ids, m.params, m.byID[id] = append(m.ids, id), append(m.params, p), p
				w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
			}
			if _, err := w.Apply(ctx, c); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 40; i++ {
				q := store.Query{K: []int{1, 5, 8, 12, 40, 34, 36}[i%7], Alpha: []float64{0, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 3}[i%8], Context: newShopContext(rng)}
				switch i % 6 {
				case 0, 3:
					q.Exclude = []string{"p00", "p12", m.reference(q)[0].ID}
				case 1:
					q.Candidates = slices.Clone(m.ids) // the scan's order, through the candidate path
				case 4:
					// 25 in a random order, one twice, one excluded.
					perm := rng.Perm(n)[:25]
					for _, a := range perm {
						q.Candidates = append(q.Candidates, m.ids[a])
					}
					q.Candidates = append(q.Candidates, m.ids[perm[3]])
					q.Exclude = []string{m.ids[perm[7]]}
				}
				got, err := store.Recommend(ctx, c, m.name, q)
				if err != nil {
					t.Fatal(err)
				}
				sameItems(t, fmt.Sprintf("%s query %d (k %d, alpha %v)", m.name, i, q.K, q.Alpha), got, m.reference(q))
			}
		}
	}
}

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
