// The demo's scenarios (scenario.NewProducts, scenario.Drift): what they
// change around the usual run.

package demo

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
)

// Priors of the products a scenario launches (Config.Prior).
const (
	// PriorFresh: a launched product starts as a fresh arm (A = λI, b = 0).
	PriorFresh = "fresh"
	// PriorPooled: it starts from linucb.PooledPrior over the arms of the
	// products of its category (all products if none has one), weighing
	// linucb.DefaultPriorEvents events.
	PriorPooled = "pooled"
	// PriorNone: launched products are not registered, so never scored —
	// the baseline of a model that only knows its history's products.
	PriorNone = "none"
)

// modelHalfLife returns the half-life the demo's model is created with:
// cfg.HalfLife, or for 0 the scenario's (scenario.DriftHalfLife for drift,
// none otherwise); negative means none.
func (c *Config) modelHalfLife() float64 {
	switch {
	case c.HalfLife < 0:
		return 0
	case c.HalfLife == 0 && c.Scenario == scenario.Drift:
		return scenario.DriftHalfLife
	}
	return c.HalfLife
}

// driftAt returns the visit after which the tastes change (0: never).
func (c *Config) driftAt() int {
	if c.Scenario != scenario.Drift {
		return 0
	}
	return int(float64(c.Visits) * scenario.DriftAt)
}

// runDrift runs the drift scenario twice on the same visits: first with
// forgetting off, quietly, for the comparison, then as configured (with
// the scenario's half-life unless cfg gives one); the second run's
// summary reports both recoveries.
func runDrift(ctx context.Context, cfg Config) (Summary, error) {
	base := cfg
	base.single, base.HalfLife = true, -1
	base.Out, base.Quiet, base.Hold, base.EnvFile, base.Listen = io.Discard, true, false, "", "127.0.0.1:0"
	base.OnReady, base.OnSummary, base.OnFeedback, base.Dir = nil, nil, nil, ""
	fmt.Fprintf(cfg.Out, "demo: drift scenario: a first run without forgetting on the same %d visits, for comparison\n", cfg.Visits)
	without, err := Run(ctx, base)
	if err != nil {
		return without, fmt.Errorf("demo: the run without forgetting: %w", err)
	}
	if without.Interrupted || without.Drift == nil {
		return without, nil
	}
	fmt.Fprintf(cfg.Out, "demo: without forgetting: linucb / oracle %.1f%% before the change, %.1f%% after, back to %.0f%% within %d visits\n",
		100*without.OracleShareBefore, 100*without.OracleShareAfter, 100*simulate.RecoveryShare, without.RecoveredWithin)
	cfg.single = true
	cfg.baseline = without.Drift
	return Run(ctx, cfg)
}

// launch registers the products the scenario launches after the history
// (the coffees of new-products) as arms with cfg.Prior's starting state,
// and returns how many it registered.
func launch(ctx context.Context, c rueidis.Client, cfg Config) (int, error) {
	cat := scenario.Catalogue(cfg.Seed)
	launched := scenario.Launched(cfg.Scenario, cat)
	if len(launched) == 0 || cfg.Prior == PriorNone {
		return 0, nil
	}
	var prior func(scenario.Product) (*linucb.Arm, error)
	if cfg.Prior == PriorPooled {
		prior = func(p scenario.Product) (*linucb.Arm, error) { return pooledPrior(ctx, c, cat, p) }
	}
	return len(launched), registerProducts(ctx, c, launched, prior)
}

// pooledPrior is p's linucb.PooledPrior over the stored arms of the
// catalogue's other products of its category, or of all products if none
// of those has an arm. The product's attributes come from the reference
// shop's table here; a catalogue stored with the model would give them
// the same way.
func pooledPrior(ctx context.Context, c rueidis.Client, cat []scenario.Product, p scenario.Product) (*linucb.Arm, error) {
	sp := spec.Reference()
	for _, sameCategory := range []bool{true, false} {
		var ids []string
		for _, q := range cat {
			if q.ID != p.ID && (!sameCategory || q.Attributes()["category"] == p.Attributes()["category"]) {
				ids = append(ids, q.ID)
			}
		}
		stored, err := store.ReadArms(ctx, c, model, sp.Dim(), linucb.DefaultLambda, ids)
		if err != nil {
			return nil, fmt.Errorf("demo: prior of %s: %w", p.ID, err)
		}
		var similar []*linucb.Arm
		for _, s := range stored {
			if s.Version > 0 && s.Arm.N() > 0 {
				similar = append(similar, s.Arm)
			}
		}
		if len(similar) > 0 {
			return linucb.PooledPrior(sp.Dim(), linucb.DefaultLambda, similar, linucb.DefaultPriorEvents), nil
		}
	}
	return linucb.NewArm(sp.Dim(), linucb.DefaultLambda), nil
}

// checkPrior returns an error unless prior is one of the demo's.
func checkPrior(prior string) error {
	if !slices.Contains([]string{"", PriorFresh, PriorPooled, PriorNone}, prior) {
		return fmt.Errorf("demo: --prior %q: want %s, %s or %s", prior, PriorFresh, PriorPooled, PriorNone)
	}
	return nil
}
