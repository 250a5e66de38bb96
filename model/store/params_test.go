package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// TestReadParamsAndCounts writes three arms and reads them back with
// ReadParams, ParamsCommand/DecodeParams and ReadCounts: θ and A⁻¹ must be
// the solved ones bit for bit, n and the reward sum the arms' own; a
// product never written is not stored (and PriorParams is θ = 0,
// A⁻¹ = I/λ); a θ cut short is ErrBadModel, a malformed reward sum no mean.
func TestReadParamsAndCounts(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const d, lambda = 3, 1.0
	ids := []string{"a", "b", "c"}
	arms := make([]*linucb.Arm, len(ids))
	params := make([]linucb.Params, len(ids))
	w := store.Write{Model: "m", Features: featureNames(d), Lambda: lambda}
	for i, id := range ids {
		arms[i], params[i] = solved(t, d, uint64(i+1), 5*i+1)
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arms[i], Params: params[i]})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}

	ask := []string{"c", "new", "a"}
	want := []int{2, -1, 0}
	got, err := store.ReadParams(ctx, c, "m", d, ask)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range got {
		j := want[i]
		if a.ID != ask[i] {
			t.Fatalf("arm %d is %s, want %s", i, a.ID, ask[i])
		}
		if j < 0 {
			if a.Stored || a.Events != 0 || a.Params.Theta != nil {
				t.Errorf("%s: %+v, want not stored", a.ID, a)
			}
			continue
		}
		if !a.Stored || a.Events != arms[j].N() || !slices.Equal(a.Params.Theta, params[j].Theta) || !slices.Equal(a.Params.AInv, params[j].AInv) {
			t.Errorf("%s: stored %v, n %d, θ %v, A⁻¹ %v; want n %d, θ %v, A⁻¹ %v", a.ID, a.Stored, a.Events, a.Params.Theta, a.Params.AInv,
				arms[j].N(), params[j].Theta, params[j].AInv)
		}
	}
	prior := store.PriorParams(2, 4)
	if !slices.Equal(prior.Theta, []float64{0, 0}) || !slices.Equal(prior.AInv, []float64{0.25, 0, 0, 0.25}) {
		t.Errorf("prior %+v", prior)
	}

	// The pipelining caller's way: the same values into preallocated slices.
	p := linucb.Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}
	for i, id := range ask {
		stored, err := store.DecodeParams(c.Do(ctx, store.ParamsCommand(c.B(), "m", id)), &p)
		if err != nil || stored != (want[i] >= 0) {
			t.Fatalf("%s: stored %v, %v", id, stored, err)
		}
		if stored && (!slices.Equal(p.Theta, params[want[i]].Theta) || !slices.Equal(p.AInv, params[want[i]].AInv)) {
			t.Errorf("%s: decoded %+v, want %+v", id, p, params[want[i]])
		}
	}

	counts, err := store.ReadCounts(ctx, c, "m", ask)
	if err != nil {
		t.Fatal(err)
	}
	for i, cn := range counts {
		mean, ok := cn.MeanReward()
		if j := want[i]; j < 0 {
			if cn.ID != "new" || cn.Events != 0 || cn.RewardsOK || ok {
				t.Errorf("new: %+v", cn)
			}
		} else if cn.ID != ids[j] || cn.Events != arms[j].N() || cn.Rewards != arms[j].Rewards() || !cn.RewardsOK ||
			!ok || mean != arms[j].Rewards()/float64(arms[j].N()) {
			t.Errorf("%s: %+v mean %v %v; want n %d, rewards %v", cn.ID, cn, mean, ok, arms[j].N(), arms[j].Rewards())
		}
	}

	// Damage: θ of a one double short, rewards of c not a number.
	theta := string(store.AppendFloats(nil, params[0].Theta[:d-1]))
	if err := c.Do(ctx, c.B().Hset().Key(store.ArmKey("m", "a")).FieldValue().FieldValue("theta", theta).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Hset().Key(store.ArmKey("m", "c")).FieldValue().FieldValue("rewards", "x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ReadParams(ctx, c, "m", d, []string{"a"}); !errors.Is(err, store.ErrBadModel) {
		t.Errorf("θ cut short: %v, want ErrBadModel", err)
	}
	if _, err := store.DecodeParams(c.Do(ctx, store.ParamsCommand(c.B(), "m", "a")), &p); !errors.Is(err, store.ErrBadModel) {
		t.Errorf("θ cut short, decoded: %v, want ErrBadModel", err)
	}
	counts, err = store.ReadCounts(ctx, c, "m", []string{"c"})
	if _, ok := counts[0].MeanReward(); err != nil || ok || counts[0].Events != arms[2].N() {
		t.Errorf("malformed rewards: %+v, %v; want n %d and no mean", counts, err, arms[2].N())
	}
	if got, err := store.ReadParams(ctx, c, "m", d, nil); got != nil || err != nil {
		t.Errorf("no products: %v, %v", got, err)
	}
}
