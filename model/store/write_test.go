package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// snapshot returns every hash of the database with its fields, to prove that
// a failed write changed nothing. (DUMP would not do: a hash table's
// serialisation order can change after mere reads, by incremental rehashing.)
func snapshot(t *testing.T, c rueidis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Do(ctx, c.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		v, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		for f, val := range v {
			out[k+"\x00"+f] = val
		}
	}
	return out
}

func solved(t *testing.T, d int, seed uint64, events int) (*linucb.Arm, linucb.Params) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	arm := linucb.NewArm(d, 1)
	x := make([]float64, d)
	for e := 0; e < events; e++ {
		for i := range x {
			x[i] = rng.Float64()
		}
		if err := arm.Update(x, float64(rng.IntN(2))); err != nil {
			t.Fatal(err)
		}
	}
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	return arm, p
}

// TestFailedWriteWritesNothing: every rejected write leaves the database
// byte-for-byte as it was.
func TestFailedWriteWritesNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	arm, p := solved(t, 3, 1, 5)
	base := store.Write{Model: "w", Features: []string{"a", "b", "c"}, Lambda: 1,
		Arms: []store.ArmWrite{{ID: "x", Arm: arm, Params: p}},
		Set:  []store.Field{{Name: "marker", Value: "1"}}}
	if _, err := base.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, c)

	arm2, p2 := solved(t, 3, 2, 7)
	arm4, p4 := solved(t, 4, 3, 7)
	cases := []struct {
		name string
		w    store.Write
		want error
	}{
		{"stale arm version", store.Write{Model: "w", Features: base.Features, Lambda: 1,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}, {ID: "x", Version: 0, Arm: arm2, Params: p2}}}, store.ErrConflict},
		{"guard on an absent field", store.Write{Model: "w", Features: base.Features, Lambda: 1,
			Guards: []store.Guard{{Field: "marker", Want: ""}},
			Arms:   []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}}}, store.ErrConflict},
		{"guard on a value", store.Write{Model: "w", Features: base.Features, Lambda: 1,
			Guards: []store.Guard{{Field: "marker", Want: "2"}},
			Arms:   []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}}}, store.ErrConflict},
		{"other dimension", store.Write{Model: "w", Features: []string{"a", "b", "c", "d"}, Lambda: 1,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm4, Params: p4}}}, store.ErrBadModel},
		{"other feature names", store.Write{Model: "w", Features: []string{"a", "b", "z"}, Lambda: 1,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}}}, store.ErrBadModel},
		{"other lambda", store.Write{Model: "w", Features: base.Features, Lambda: 2,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}}}, store.ErrBadModel},
		{"negative reward sum", store.Write{Model: "w", Features: base.Features, Lambda: 1, Rewards: -1,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}}}, store.ErrBadArg},
		{"same arm twice", store.Write{Model: "w", Features: base.Features, Lambda: 1,
			Arms: []store.ArmWrite{{ID: "y", Arm: arm2, Params: p2}, {ID: "y", Arm: arm2, Params: p2}}}, store.ErrBadArg},
	}
	for _, tc := range cases {
		_, err := tc.w.Apply(ctx, c)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.want)
		}
		if after := snapshot(t, c); !maps.Equal(before, after) {
			t.Fatalf("%s: the failed write changed the database", tc.name)
		}
	}
}

// TestRewriteArms updates arms in place, in the first and in a later column
// block, and checks that the versions advance, the stored state round-trips
// and scoring sees the new parameters.
func TestRewriteArms(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const d = 2
	n := store.DefaultBlock + 6
	m := writeRandomModel(t, c, "rw", d, n, 5)
	ids := []string{m.ids[3], m.ids[n-2]}
	stored, err := store.ReadArms(ctx, c, "rw", d, 1, ids)
	if err != nil {
		t.Fatal(err)
	}
	before, err := store.ReadMeta(ctx, c, "rw")
	if err != nil {
		t.Fatal(err)
	}
	// Two events, rewards 0 and 1, and 3 dead-lettered ones.
	w := store.Write{Model: "rw", Features: featureNames(d), Lambda: 1, Events: 2, Rewards: 1, Invalid: 3}
	for i, s := range stored {
		if s.Version != 1 {
			t.Fatalf("arm %s at version %d, want 1", s.ID, s.Version)
		}
		if err := s.Arm.Update([]float64{1, 2}, float64(i)); err != nil {
			t.Fatal(err)
		}
		p, err := s.Arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		m.byID[s.ID] = p
		m.params[map[int]int{0: 3, 1: n - 2}[i]] = p
		w.Arms = append(w.Arms, store.ArmWrite{ID: s.ID, Version: s.Version, Arm: s.Arm, Params: p})
	}
	vers, err := w.Apply(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(vers) != "[2 2]" {
		t.Fatalf("versions %v, want [2 2]", vers)
	}
	again, err := store.ReadArms(ctx, c, "rw", d, 1, ids)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].Version != 2 || again[i].Arm.N() != stored[i].Arm.N() || again[i].Arm.A()[1] != stored[i].Arm.A()[1] ||
			again[i].Arm.Rewards() != stored[i].Arm.Rewards() {
			t.Fatalf("arm %s read back as version %d n %d rewards %v, want 2, %d, %v", again[i].ID, again[i].Version,
				again[i].Arm.N(), again[i].Arm.Rewards(), stored[i].Arm.N(), stored[i].Arm.Rewards())
		}
	}
	meta, err := store.ReadMeta(ctx, c, "rw")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Arms != n || meta.Events != before.Events+2 || meta.Dim != d || meta.Rewards != before.Rewards+1 || meta.Invalid != before.Invalid+3 {
		t.Fatalf("meta %+v, before the write %+v", meta, before)
	}
	for _, x := range [][]float64{{1, 2}, {-1, 0.5}, {0, 3}} {
		q := store.Query{K: 10, Alpha: 0.5, Context: x}
		got, err := store.Recommend(ctx, c, "rw", q)
		if err != nil {
			t.Fatal(err)
		}
		sameItems(t, fmt.Sprint(x), got, m.reference(q))
	}
}

// TestScriptsSurviveFlushAndRestart: after SCRIPT FLUSH or a restart the
// client recovers from NOSCRIPT by itself, and FCALL keeps working because
// functions are persisted with the data.
func TestScriptsSurviveFlushAndRestart(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	c := srv.Client()
	ctx := context.Background()
	m := writeRandomModel(t, c, "r", 4, 20, 3)
	if err := store.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	q := store.Query{K: 3, Alpha: 0.1, Context: []float64{1, 0, 0.5, 0}}
	want := m.reference(q)
	check := func(when string) {
		t.Helper()
		got, err := store.Recommend(ctx, c, "r", q)
		if err != nil {
			t.Fatalf("EVALSHA %s: %v", when, err)
		}
		sameItems(t, "EVALSHA "+when, got, want)
		got, err = store.RecommendFCall(ctx, c, "r", q)
		if err != nil {
			t.Fatalf("FCALL_RO %s: %v", when, err)
		}
		sameItems(t, "FCALL_RO "+when, got, want)
	}
	check("at start")
	if err := c.Do(ctx, c.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	check("after SCRIPT FLUSH")
	srv.Restart()
	check("after a restart")
	srv.Kill()
	srv.Restart()
	check("after SIGKILL and a restart")
}
