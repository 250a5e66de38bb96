package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// A damage done to one field of a model's root: the field's new value from
// its old one, or (nil) the field deleted.
type damage struct {
	name string
	f    func(v string) string
}

var damages = []damage{
	{"emptied", func(string) string { return "" }},
	{"cut by 1 byte", func(v string) string { return v[:max(len(v)-1, 0)] }},
	{"cut by 8 bytes", func(v string) string { return v[:max(len(v)-8, 0)] }},
	{"lengthened by 8 bytes", func(v string) string { return v + "\x00\x00\x00\x00\x00\x00\xf0\x3f" }},
	{"text", func(string) string { return "x" }},
	{"a negative number", func(string) string { return "-1" }},
	{"a huge number", func(string) string { return "1e999" }},
	{"nan", func(string) string { return "nan" }},
	{"a fraction", func(string) string { return "2.5" }},
	{"JSON of the wrong shape", func(string) string { return `[{"features":"x"}]` }},
	{"zero", func(string) string { return "0" }},
	{"one", func(string) string { return "1" }},
	{"one more", func(v string) string {
		if n, err := strconv.Atoi(v); err == nil {
			return strconv.Itoa(n + 1)
		}
		return v + "1"
	}},
	{"large", func(string) string { return "100000" }},
	{"deleted", nil},
}

// damageModel writes a 40-product model of the reference shop's layout
// (one-hot groups) and returns the write, the arms' versions and the root's
// fields, names sorted.
func damageModel(t *testing.T, c rueidis.Client, rng *rand.Rand) (store.Write, []int64, map[string]string, []string) {
	t.Helper()
	ctx := context.Background()
	w := shopWrite(t, rng, "dmg", "p%d", 40, func() int { return rng.IntN(20) })
	vers, err := w.Apply(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := c.Do(ctx, c.B().Hgetall().Key(store.RootKey(w.Model)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	slices.Sort(names)
	return w, vers, fields, names
}

// shopWrite returns a write of n products of the reference shop's layout
// (one-hot groups), named by idfmt, each trained on events() random
// one-hot contexts with random 0/1 rewards.
func shopWrite(tb testing.TB, rng *rand.Rand, model, idfmt string, n int, events func() int) store.Write {
	tb.Helper()
	w := store.Write{Model: model, Features: featureNames(shopDim), Groups: shopGroups, Lambda: 1}
	for a := range n {
		arm := linucb.NewArm(shopDim, 1)
		for range events() {
			if err := arm.Update(newShopContext(rng), float64(rng.IntN(2))); err != nil {
				tb.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			tb.Fatal(err)
		}
		w.Arms = append(w.Arms, store.ArmWrite{ID: fmt.Sprintf(idfmt, a), Arm: arm, Params: p})
	}
	return w
}

// damageField applies dmg to field f of root (old value v).
func damageField(t *testing.T, c rueidis.Client, root, f, v string, dmg damage) {
	t.Helper()
	ctx := context.Background()
	cmd := c.B().Hdel().Key(root).Field(f).Build()
	if dmg.f != nil {
		cmd = c.B().Hset().Key(root).FieldValue().FieldValue(f, dmg.f(v)).Build()
	}
	if err := c.Do(ctx, cmd).Error(); err != nil {
		t.Fatal(err)
	}
}

// cleanError reports whether err is nil or one of the scripts' own errors
// with a message: never a Lua runtime error or stack trace.
func cleanError(err error) bool {
	if err == nil {
		return true
	}
	return (errors.Is(err, store.ErrBadModel) || errors.Is(err, store.ErrNoModel) || errors.Is(err, store.ErrBadArg) || errors.Is(err, store.ErrConflict)) &&
		!containsAny(err.Error(), "user_script", "stack traceback", "@user_function", "attempt to")
}

// TestCorruptModel damages one field of a model's root at a time — emptied,
// cut short, lengthened, replaced by text or a number, or deleted — and asks
// for recommendations along every path of the script (the folded rows, the
// general columns, candidate lists of folded rows and of general rows, with
// exclusions). A damaged model may still answer (a damage the script cannot
// see, or in a field it does not read), but an error must be one of the
// script's own, with a message, never a Lua runtime error or stack trace.
// The fields are those of the products the queries name, the metadata and
// a fixed sample of the rest: damaging every one of the 910 fields makes
// over 100,000 calls, too slow for every run of the suite.
func TestCorruptModel(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(31, 32))
	w, _, fields, names := damageModel(t, c, rng)
	if err := store.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	root := store.RootKey(w.Model)
	oneHot := newShopContext(rng)
	general := newShopContext(rng)
	general[3], general[4] = 1, 1 // two genders: not one-hot
	queries := []store.Query{
		{K: 5, Alpha: 0.1, Context: oneHot},
		{K: 5, Alpha: 1, Context: general, Exclude: []string{"p3"}},
		{K: 3, Alpha: 0.1, Context: oneHot, Candidates: []string{"p1", "p7", "p30", "new"}, Exclude: []string{"p7"}},
		{K: 3, Alpha: 0.1, Context: general, Candidates: []string{"p2", "p9", "p39"}},
	}
	named := func(f string) bool {
		for _, q := range queries {
			for _, id := range slices.Concat(q.Candidates, q.Exclude) {
				if strings.HasSuffix(f, ":"+id) {
					return true
				}
			}
		}
		return !strings.Contains(f, ":")
	}
	calls, tried := 0, 0
	for _, f := range names {
		if !named(f) && rng.IntN(24) != 0 {
			continue
		}
		tried++
		for j, dmg := range damages {
			damageField(t, c, root, f, fields[f], dmg)
			for i, q := range queries {
				// The script and the function run the same code: each
				// damage and query goes through one of them, in turn.
				var err error
				via := "evalsha"
				if (i+j)%2 == 0 {
					_, err = store.Recommend(ctx, c, w.Model, q)
				} else {
					via = "fcall_ro"
					_, err = store.RecommendFCall(ctx, c, w.Model, q)
				}
				calls++
				if !cleanError(err) {
					t.Errorf("field %s %s, query %d (%s): %v", f, dmg.name, i, via, err)
				}
			}
			damageField(t, c, root, f, "", damage{"restored", func(string) string { return fields[f] }})
		}
	}
	t.Logf("%d damaged calls over %d of the model's %d fields", calls, tried, len(names))
}

// TestCorruptModelWrite damages one field of a model's root at a time and
// then writes to it: one product of the block (a partial rebuild of its
// rows), a new product, and every product (the whole block as sent). A
// write may succeed where the damage is out of its way, but an error must
// be one of the script's own (BADMODEL, …), never a Lua runtime error —
// which could also leave a half-done write, as Redis does not undo what a
// failing script wrote. The model is restored (DUMP/RESTORE of every key)
// after each write.
func TestCorruptModelWrite(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(33, 34))
	w, vers, fields, names := damageModel(t, c, rng)
	root := store.RootKey(w.Model)
	keys := []string{root}
	for _, a := range w.Arms {
		keys = append(keys, store.ArmKey(w.Model, a.ID))
	}
	dumps := make([]string, len(keys))
	for i, k := range keys {
		v, err := c.Do(ctx, c.B().Dump().Key(k).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		dumps[i] = v
	}
	restore := func() {
		t.Helper()
		cmds := rueidis.Commands{c.B().Del().Key(store.ArmKey(w.Model, "q-new")).Build()}
		for i, k := range keys {
			cmds = append(cmds, c.B().Restore().Key(k).Ttl(0).SerializedValue(dumps[i]).Replace().Build())
		}
		for _, res := range c.DoMulti(ctx, cmds...) {
			if err := res.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	at := func(ws ...store.ArmWrite) store.Write {
		x := w
		x.Arms = ws
		return x
	}
	one := w.Arms[5]
	one.Version = vers[5]
	fresh := store.ArmWrite{ID: "q-new", Arm: linucb.NewArm(shopDim, 1)}
	fresh.Params, _ = fresh.Arm.Solve()
	all := slices.Clone(w.Arms)
	for i := range all {
		all[i].Version = vers[i]
	}
	writes := map[string]store.Write{"one product": at(one), "a new product": at(fresh), "every product": at(all...)}
	hgetall := func(key string) map[string]string {
		t.Helper()
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	arms := map[string]map[string]string{}
	for _, id := range []string{"p0", "p5", "p39", "q-new"} {
		arms[id] = hgetall(store.ArmKey(w.Model, id))
	}
	rowDamages := []damage{damages[0], damages[2], damages[3], damages[len(damages)-1]} // emptied, cut, lengthened, deleted
	// The root's metadata, the fields of product p5 and a fixed sample of
	// the other rows; and every field of p5's arm hash.
	type target struct {
		key, field string
		row        bool // a row of the root: rowDamages only
	}
	var targets []target
	for _, f := range names {
		row := strings.Contains(f, ":")
		if row && !strings.HasSuffix(f, ":p5") && rng.IntN(30) != 0 {
			continue
		}
		targets = append(targets, target{root, f, row})
	}
	armKey := store.ArmKey(w.Model, "p5")
	for _, f := range slices.Sorted(maps.Keys(arms["p5"])) {
		targets = append(targets, target{armKey, f, false})
	}
	state := map[string]map[string]string{root: fields}
	for id, m := range arms {
		state[store.ArmKey(w.Model, id)] = m
	}
	calls := 0
	for _, tg := range targets {
		dmgs := damages
		if tg.row {
			dmgs = rowDamages
		}
		for _, dmg := range dmgs {
			damaged := maps.Clone(state[tg.key])
			if dmg.f == nil {
				delete(damaged, tg.field)
			} else {
				damaged[tg.field] = dmg.f(state[tg.key][tg.field])
			}
			for name, wr := range writes {
				if tg.row && name == "every product" {
					continue // reads no rows: a whole block is written as sent
				}
				damageField(t, c, tg.key, tg.field, state[tg.key][tg.field], dmg)
				_, err := wr.Apply(ctx, c)
				calls++
				if !cleanError(err) {
					t.Errorf("%s field %s %s, write of %s: %v", tg.key, tg.field, dmg.name, name, err)
				}
				if err == nil && name != "a new product" && !(tg.key == root && tg.field == "arms") {
					// A write of stored products adds none (a product
					// given a second index would be served twice).
					if got, _ := c.Do(ctx, c.B().Hget().Key(root).Field("arms").Build()).ToString(); got != fields["arms"] {
						t.Errorf("%s field %s %s, write of %s: the model has %s products, was %s", tg.key, tg.field, dmg.name, name, got, fields["arms"])
					}
				}
				if err != nil {
					// Nothing of a failed write is stored.
					keys := slices.Sorted(maps.Keys(state))
					cmds := make(rueidis.Commands, len(keys))
					for i, key := range keys {
						cmds[i] = c.B().Hgetall().Key(key).Build()
					}
					for i, res := range c.DoMulti(ctx, cmds...) {
						want := state[keys[i]]
						if keys[i] == tg.key {
							want = damaged
						}
						if got, rerr := res.AsStrMap(); rerr != nil || !maps.Equal(got, want) {
							t.Errorf("%s field %s %s, write of %s failed (%v) but changed %s", tg.key, tg.field, dmg.name, name, err, keys[i])
						}
					}
				}
				restore()
			}
		}
	}
	t.Logf("%d writes to a damaged model over %d fields (of the root's %d and p5's arm hash)", calls, len(targets), len(names))
}
