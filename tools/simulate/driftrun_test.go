package simulate_test

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
)

// staleOracle recommends the five products with the highest click
// probability under the original tastes, ranked as the oracle ranks.
type staleOracle struct {
	truth *scenario.Truth
	cat   []scenario.Product
}

func (s staleOracle) Recommend(_ context.Context, v *simulate.Visit, k int) ([]string, error) {
	cat := append([]scenario.Product(nil), s.cat...)
	sort.SliceStable(cat, func(i, j int) bool { return s.truth.Prob(v.User, cat[i], v.At) > s.truth.Prob(v.User, cat[j], v.At) })
	out := make([]string, k)
	for i := range out {
		out[i] = cat[i].ID
	}
	return out, nil
}

// TestDriftRun serves a policy that knows the original tastes: before the
// change it clicks exactly as the oracle does (share 1), after it the
// oracle follows the drifted tastes and the stale policy falls behind and
// never recovers; without DriftAt there is no drift report.
func TestDriftRun(t *testing.T) {
	cat := scenario.Catalogue(1)
	rec := staleOracle{scenario.NewTruth(cat), cat}
	cfg := simulate.Config{Visits: 4000, DriftAt: 2000, Now: scenario.DefaultNow, Recommender: rec, Sink: &recorder{}}
	sum, err := simulate.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := sum.Drift
	if d == nil || d.At != 2000 || d.OracleShareBefore != 1 || !(d.OracleShareAfter < 0.9) || d.RecoveredWithin != -1 {
		t.Fatalf("drift %+v: want share 1 before, below 0.9 after, never recovered", d)
	}
	b, _ := json.Marshal(sum)
	if !strings.Contains(string(b), `"recovered_within":-1`) || !strings.Contains(string(b), `"oracle_share_before":1`) {
		t.Fatalf("summary JSON %s", b)
	}
	cfg.DriftAt, cfg.Visits, cfg.Sink = 0, 500, &recorder{}
	if sum, err = simulate.Run(context.Background(), cfg); err != nil || sum.Drift != nil {
		t.Fatalf("without drift: %+v, %v", sum.Drift, err)
	}
	b, _ = json.Marshal(sum)
	if strings.Contains(string(b), "recovered_within") {
		t.Fatalf("summary JSON without drift %s", b)
	}
}
