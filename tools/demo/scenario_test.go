package demo_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redbandit/redbandit/tools/demo"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
)

// TestDemoNewProducts runs the new-products scenario twice: with the
// coffees launched as fresh arms (4,000 visits at the demo's pace of about
// 100 visits per flush) they are shown — once the flushes have brought
// the warm arms that were lucky in the history below a fresh arm's bonus,
// after about 2,300 visits — and without registering them (prior none,
// 1,000 visits) never: the coffees are in no historical event either way.
func TestDemoNewProducts(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	coffees := map[string]bool{}
	for _, p := range scenario.Launched(scenario.NewProducts, scenario.Catalogue(1)) {
		coffees[p.ID] = true
	}
	for _, prior := range []string{demo.PriorFresh, demo.PriorNone} {
		var mu sync.Mutex
		shown := 0
		var out bytes.Buffer
		visits, rate := 4000, 1000.0
		if prior == demo.PriorNone {
			visits, rate = 1000, -1
		}
		cfg := demo.Config{Visits: visits, Rate: rate, FlushInterval: 100 * time.Millisecond, Out: &out, Quiet: true, Listen: "127.0.0.1:0",
			Scenario: scenario.NewProducts, Prior: prior, OnFeedback: func(fb simulate.Feedback) {
				mu.Lock()
				defer mu.Unlock()
				for _, id := range fb.Slate {
					if coffees[id] {
						shown++
					}
				}
			}}
		sum, err := demo.Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v\n%s", prior, err, out.String())
		}
		t.Logf("prior %s: coffees shown %d times; linucb / oracle over the last quarter %.3f", prior, shown, sum.OracleShare)
		switch prior {
		case demo.PriorFresh:
			if sum.Launched != 6 || sum.Prior != prior || shown < 50 || !strings.Contains(out.String(), "6 products launched") {
				t.Errorf("fresh: launched %d (%s), coffees shown %d times, want 6 and many", sum.Launched, sum.Prior, shown)
			}
		case demo.PriorNone:
			if sum.Launched != 0 || shown != 0 {
				t.Errorf("none: launched %d, coffees shown %d times, want 0 and 0", sum.Launched, shown)
			}
		}
		if sum.Scenario != scenario.NewProducts || sum.Drift != nil {
			t.Errorf("scenario %q, drift %+v", sum.Scenario, sum.Drift)
		}
	}
}

// TestDemoDrift runs the drift scenario for 1,200 visits: the tastes
// change after visit 600, the model forgets with the scenario's half-life,
// and the summary reports the recovery of this run and of the first run
// on the same visits without forgetting.
func TestDemoDrift(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demo.Config{Visits: 1200, Rate: -1, FlushInterval: 100 * time.Millisecond, Out: &out, Quiet: true,
		Listen: "127.0.0.1:0", Scenario: scenario.Drift})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	d := sum.Drift
	if d == nil || d.At != 600 || sum.HalfLife != scenario.DriftHalfLife || sum.RecoveredWithinNoForgetting == nil || sum.Visits != 1200 ||
		!(d.OracleShareBefore > 0.5) || !strings.Contains(out.String(), "without forgetting") {
		t.Fatalf("summary %+v, drift %+v\n%s", sum, d, out.String())
	}
	t.Logf("before %.3f after %.3f recovered within %d, without forgetting %d", d.OracleShareBefore, d.OracleShareAfter, d.RecoveredWithin, *sum.RecoveredWithinNoForgetting)
	if _, err := demo.Run(context.Background(), demo.Config{Scenario: "winter"}); err == nil {
		t.Error("unknown scenario accepted")
	}
	if _, err := demo.Run(context.Background(), demo.Config{Prior: "oracle"}); err == nil {
		t.Error("unknown prior accepted")
	}
}
