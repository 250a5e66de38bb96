package simulate_test

import (
	"context"
	"maps"
	"math"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/event"
)

// folder is a stand-in for the trainer, in process: it folds every event
// into its arm and writes the changed arms every `every` events. (The real
// loop through Kafka and the trainer is tested with them.)
type folder struct {
	c      rueidis.Client
	model  string
	every  int
	arms   map[string]*store.StoredArm
	dirty  map[string]bool
	events int64
	clicks int64 // events with reward 1
}

func (f *folder) Send(ctx context.Context, fb simulate.Feedback) error {
	for _, ev := range fb.Events() {
		if err := f.fold(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

func (f *folder) fold(ctx context.Context, ev event.Event) error {
	a := f.arms[ev.ProductID]
	if a == nil {
		got, err := store.ReadArms(ctx, f.c, f.model, len(ev.ContextVector), 1, []string{ev.ProductID})
		if err != nil {
			return err
		}
		a = &got[0]
		f.arms[ev.ProductID] = a
	}
	if err := a.Arm.Update(ev.ContextVector, ev.Reward); err != nil {
		return err
	}
	f.dirty[ev.ProductID] = true
	f.events++
	if ev.Reward == 1 {
		f.clicks++
	}
	if f.events%int64(f.every) == 0 {
		return f.flush(ctx)
	}
	return nil
}

func (f *folder) flush(ctx context.Context) error {
	sp := spec.Reference()
	w := store.Write{Model: f.model, Features: sp.Names(), Groups: sp.Groups(), Lambda: 1, Events: int64(len(f.dirty))}
	var ids []string
	for id := range f.dirty {
		a := f.arms[id]
		p, err := a.Arm.Solve()
		if err != nil {
			return err
		}
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Version: a.Version, Arm: a.Arm, Params: p})
		ids = append(ids, id)
	}
	vers, err := w.Apply(ctx, f.c)
	if err != nil {
		return err
	}
	for i, id := range ids {
		f.arms[id].Version = vers[i]
	}
	f.dirty = map[string]bool{}
	return nil
}

// TestLearningLoop: with the default feedback (impressions above the
// click), warm-started from the generated history, LinUCB served
// through Redis and through the sidecar must beat the random policy on the
// same 3,000 visits by a clear margin over the last 1,000, and stay below
// the oracle.
func TestLearningLoop(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	dir := t.TempDir()
	if err := scenario.Generate(dir, 1, scenario.DefaultNow); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.Run(ctx, c, filepath.Join(dir, scenario.LogFile), bootstrap.Config{Model: "shop", Spec: spec.Reference()}); err != nil {
		t.Fatal(err)
	}
	sc := sidecar.New(sidecar.Config{Redis: c, Model: "shop"})
	if err := sc.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sc.Handler())
	defer hs.Close()

	for name, rec := range map[string]simulate.Recommender{
		"redis": &simulate.Redis{Client: c, Model: "shop", Alpha: linucb.DefaultAlpha},
		"http":  &simulate.HTTP{URL: hs.URL, Model: "shop", Alpha: linucb.DefaultAlpha},
	} {
		sink := &folder{c: c, model: "shop", every: 100, arms: map[string]*store.StoredArm{}, dirty: map[string]bool{}}
		var live simulate.Live
		sum, err := simulate.Run(ctx, simulate.Config{Visits: 3000, Seed: 5, Now: scenario.DefaultNow.Add(24 * time.Hour),
			Recommender: rec, Sink: sink, Window: 1000, Live: &live})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// The default feedback: an event for the click and each product
		// above it, or for all five products shown when nothing is clicked.
		if sum.Visits != 3000 || sum.Sent != int(sink.events) || sum.Sent <= 3000 || sum.Sent >= 5*3000 || sink.clicks != int64(sum.Clicks[simulate.LinUCB]) {
			t.Fatalf("%s: %d visits, %d sent, %d folded, %d rewards 1 for %d clicks", name, sum.Visits, sum.Sent, sink.events, sink.clicks, sum.Clicks[simulate.LinUCB])
		}
		last := sum.Curve[len(sum.Curve)-1].CTR // rolling over the last 1,000 visits
		if visits, ctr := live.Snapshot(); visits != 3000 || !maps.Equal(ctr, last) {
			t.Fatalf("%s: live snapshot %d visits, %v; want 3000, %v", name, visits, ctr, last)
		}
		lin, rnd, orc := last[simulate.LinUCB], last[simulate.Random], last[simulate.Oracle]
		// Two proportions over 1,000 visits each: require LinUCB above random
		// by more than 4 standard errors of the difference.
		se := math.Sqrt(lin*(1-lin)/1000 + rnd*(1-rnd)/1000)
		t.Logf("%s: last 1,000 visits CTR linucb %.3f random %.3f oracle %.3f (se %.3f); overall %v", name, lin, rnd, orc, se, sum.CTR)
		if lin-rnd < 4*se {
			t.Errorf("%s: LinUCB %.3f does not beat random %.3f by 4 standard errors (%.3f)", name, lin, rnd, 4*se)
		}
		if lin > orc+4*se {
			t.Errorf("%s: LinUCB %.3f above the oracle %.3f", name, lin, orc)
		}
	}
}
