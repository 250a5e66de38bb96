package scenario_test

import (
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redbandit/redbandit/tools/scenario"
)

// TestDriftedTruth checks the drifted click model on hand-computed cases:
// coffee boosted in the evening and not in the morning, pizza without its
// weekend boost, burgers and everything else as before; the original truth
// is unchanged.
func TestDriftedTruth(t *testing.T) {
	coffee := scenario.Product{ID: "c", Category: scenario.Drinks, Price: 5, IsCoffee: true}
	pizza := scenario.Product{ID: "p", Category: scenario.Pizzas, Price: 20}
	burger := scenario.Product{ID: "b", Category: scenario.Burgers, Price: 18}
	dear := scenario.Product{ID: "d", Category: scenario.Salads, Price: 40}
	truth := scenario.NewTruth([]scenario.Product{coffee, pizza, burger, dear})
	drifted := truth.Drifted()
	mel := scenario.ShopZone
	mondayMorning := time.Date(2026, 1, 5, 8, 0, 0, 0, mel)
	mondayEvening := time.Date(2026, 1, 5, 19, 0, 0, 0, mel)
	saturdayEvening := time.Date(2026, 1, 10, 23, 59, 0, 0, mel)
	young := scenario.User{Age: 20, TrafficSource: "Email"}
	searcher := scenario.User{Age: 50, TrafficSource: "Search"}
	cases := []struct {
		name          string
		u             scenario.User
		p             scenario.Product
		at            time.Time
		before, after float64
	}{
		{"coffee in the morning", young, coffee, mondayMorning, 0, -2.5},
		{"coffee in the evening", young, coffee, mondayEvening, -2.5, 0},
		{"coffee on Saturday evening, searched", searcher, coffee, saturdayEvening, -2.0, 0.5},
		{"pizza on Saturday", young, pizza, saturdayEvening, -0.7, -2.5},
		{"burger on Saturday", searcher, burger, saturdayEvening, -0.2, -0.2},
		{"pizza on Monday", young, pizza, mondayEvening, -2.5, -2.5},
		{"young and the dearest", young, dear, mondayEvening, -5.5, -5.5},
	}
	for _, c := range cases {
		if got := truth.Logit(c.u, c.p, c.at); math.Abs(got-c.before) > 1e-12 {
			t.Errorf("%s: logit before %v, want %v", c.name, got, c.before)
		}
		if got := drifted.Logit(c.u, c.p, c.at); math.Abs(got-c.after) > 1e-12 {
			t.Errorf("%s: logit after %v, want %v", c.name, got, c.after)
		}
	}
}

// TestGenerateNewProducts: the new-products log never shows a coffee, the
// catalogue still lists all six, Launched names them, and the steady
// scenario's files are Generate's.
func TestGenerateNewProducts(t *testing.T) {
	dir, steady, plain := t.TempDir(), t.TempDir(), t.TempDir()
	if err := scenario.GenerateScenario(dir, 1, scenario.DefaultNow, scenario.NewProducts); err != nil {
		t.Fatal(err)
	}
	if err := scenario.GenerateScenario(steady, 1, scenario.DefaultNow, scenario.Steady); err != nil {
		t.Fatal(err)
	}
	if err := scenario.Generate(plain, 1, scenario.DefaultNow); err != nil {
		t.Fatal(err)
	}
	cat := scenario.Catalogue(1)
	coffees := map[string]bool{}
	for _, p := range scenario.Launched(scenario.NewProducts, cat) {
		if !p.IsCoffee {
			t.Errorf("launched %+v, not a coffee", p)
		}
		coffees[p.ID] = true
	}
	if len(coffees) != 6 || len(scenario.Launched(scenario.Drift, cat)) != 0 {
		t.Fatalf("launched %v", coffees)
	}
	rows := readCSV(t, filepath.Join(dir, scenario.LogFile))
	col := len(rows[0]) - 2 // product_id
	seen := map[string]bool{}
	for _, r := range rows[1:] {
		if coffees[r[col]] {
			t.Fatalf("the new-products log shows coffee %s", r[col])
		}
		seen[r[col]] = true
	}
	if len(rows) != scenario.LogEvents+1 || len(seen) != len(cat)-6 {
		t.Fatalf("%d rows over %d products, want %d over %d", len(rows)-1, len(seen), scenario.LogEvents, len(cat)-6)
	}
	if n := len(readCSV(t, filepath.Join(dir, scenario.CatalogueFile))); n != len(cat)+1 {
		t.Fatalf("catalogue has %d rows", n)
	}
	for _, name := range []string{scenario.CatalogueFile, scenario.LogFile} {
		a, _ := os.ReadFile(filepath.Join(steady, name))
		b, _ := os.ReadFile(filepath.Join(plain, name))
		if string(a) != string(b) {
			t.Errorf("steady %s differs from Generate's", name)
		}
	}
	if err := scenario.GenerateScenario(t.TempDir(), 1, scenario.DefaultNow, "winter"); err == nil {
		t.Error("unknown scenario accepted")
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
