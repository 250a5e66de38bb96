package scenario_test

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/training/bootstrap"
)

func TestCatalogueAndUsers(t *testing.T) {
	cat := scenario.Catalogue(1)
	if len(cat) < 180 || len(cat) > 220 {
		t.Fatalf("%d products, want about 200", len(cat))
	}
	coffee, cats, ids := 0, map[string]int{}, map[string]bool{}
	for _, p := range cat {
		if p.IsCoffee {
			coffee++
			if p.Category != scenario.Drinks {
				t.Errorf("coffee %s in %s", p.Name, p.Category)
			}
		}
		if ids[p.ID] || p.Name == "" || !(p.Price > 0) {
			t.Errorf("product %+v", p)
		}
		ids[p.ID] = true
		cats[p.Category]++
	}
	if coffee < 3 || coffee > 10 || len(cats) < 6 || cats[scenario.Burgers] == 0 || cats[scenario.Pizzas] == 0 {
		t.Fatalf("coffee %d, categories %v", coffee, cats)
	}
	users := scenario.Users(1)
	sources := map[string]int{}
	for _, u := range users {
		if u.Age < 16 || u.Age > 70 || (u.Gender != "F" && u.Gender != "M") || math.Abs(u.Latitude+37.81) > 0.5 {
			t.Fatalf("user %+v", u)
		}
		sources[u.TrafficSource]++
	}
	// Weights .70/.15/.06/.05/.04 over 1,000 users: within 4.5 binomial σ.
	for src, w := range map[string]float64{"Search": .70, "Organic": .15, "Facebook": .06, "Email": .05, "Display": .04} {
		mean := 1000 * w
		if math.Abs(float64(sources[src])-mean) > 4.5*math.Sqrt(mean*(1-w)) {
			t.Errorf("%s: %d users, expected about %.0f", src, sources[src], mean)
		}
	}
}

// TestTruth checks the click model's rules on hand-picked cases.
func TestTruth(t *testing.T) {
	cheapest := scenario.Product{ID: "a", Category: scenario.Sides, Price: 4}
	dearest := scenario.Product{ID: "b", Category: scenario.Pizzas, Price: 32}
	coffee := scenario.Product{ID: "c", Category: scenario.Drinks, Price: 5, IsCoffee: true}
	burger := scenario.Product{ID: "d", Category: scenario.Burgers, Price: 18}
	truth := scenario.NewTruth([]scenario.Product{cheapest, dearest, coffee, burger})
	mel := scenario.ShopZone
	mondayMorning := time.Date(2026, 1, 5, 8, 0, 0, 0, mel)
	mondayNight := time.Date(2026, 1, 5, 22, 0, 0, 0, mel)
	saturdayMorning := time.Date(2026, 1, 10, 9, 30, 0, 0, mel)
	young := scenario.User{Age: 20, TrafficSource: "Email"}  // scaled age 0.074
	old := scenario.User{Age: 60, TrafficSource: "Search"}   // scaled age 0.81
	edge := scenario.User{Age: 29, TrafficSource: "Organic"} // scaled age 0.2407 < 0.25
	cases := []struct {
		name  string
		u     scenario.User
		p     scenario.Product
		at    time.Time
		logit float64
	}{
		{"base", young, cheapest, mondayNight, -2.5},
		{"search", old, cheapest, mondayNight, -2.0},
		{"coffee in the morning", young, coffee, mondayMorning, 0},
		{"coffee at night", young, coffee, mondayNight, -2.5},
		{"burger on Saturday, searched", old, burger, saturdayMorning, -2.5 + 1.8 + 0.5},
		{"burger on Monday", old, burger, mondayMorning, -2.0},
		{"young and the dearest pizza on Saturday", young, dearest, saturdayMorning, -2.5 + 1.8 - 3.0},
		{"scaled age just under 0.25", edge, dearest, mondayNight, -5.5},
		{"coffee on Saturday morning", old, coffee, saturdayMorning, 0.5},
		// The same instant in UTC is still Saturday morning in Melbourne.
		{"zone", old, coffee, saturdayMorning.UTC(), 0.5},
	}
	for _, c := range cases {
		if got := truth.Logit(c.u, c.p, c.at); math.Abs(got-c.logit) > 1e-12 {
			t.Errorf("%s: logit %v, want %v", c.name, got, c.logit)
		}
		if got, want := truth.Prob(c.u, c.p, c.at), 1/(1+math.Exp(-c.logit)); math.Abs(got-want) > 1e-15 {
			t.Errorf("%s: p %v, want %v", c.name, got, want)
		}
	}
	if got := truth.ScaledPrice(dearest); got != 1 {
		t.Errorf("scaled price of the dearest: %v", got)
	}
}

// TestGenerate: a seed gives the same files; the log passes bootstrap; its
// click rate is what the ground truth predicts.
func TestGenerate(t *testing.T) {
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := scenario.Generate(dir, 7, scenario.DefaultNow); err != nil {
			t.Fatal(err)
		}
	}
	if err := scenario.Generate(c, 8, scenario.DefaultNow); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{scenario.CatalogueFile, scenario.UsersFile, scenario.LogFile} {
		fa, _ := os.ReadFile(filepath.Join(a, name))
		fb, _ := os.ReadFile(filepath.Join(b, name))
		fc, _ := os.ReadFile(filepath.Join(c, name))
		if len(fa) == 0 || !bytes.Equal(fa, fb) {
			t.Errorf("%s differs between two runs with the same seed", name)
		}
		if bytes.Equal(fa, fc) {
			t.Errorf("%s is the same for seeds 7 and 8", name)
		}
	}
	log, _ := os.ReadFile(filepath.Join(a, scenario.LogFile))
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != scenario.LogEvents+1 || lines[0] != "event_id,"+strings.Join(spec.Reference().Names(), ",")+",product_id,response" {
		t.Fatalf("log has %d lines, header %q", len(lines), lines[0])
	}
	clicks := strings.Count(string(log), ",1\n")
	// Over uniformly random products most clicks are base rate (≈ 8–13%):
	// the log's rate must fall in a broad band around it.
	if rate := float64(clicks) / scenario.LogEvents; rate < 0.07 || rate > 0.20 {
		t.Errorf("click rate %.3f", rate)
	}

	srv := redistest.Start(t)
	res, err := bootstrap.Run(context.Background(), srv.Client(), filepath.Join(a, scenario.LogFile),
		bootstrap.Config{Model: "shop", Spec: spec.Reference()})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := store.ReadMeta(context.Background(), srv.Client(), "shop")
	if err != nil || res.Events != scenario.LogEvents || meta.Events != scenario.LogEvents || meta.Arms < 180 || len(meta.Groups) != 4 {
		t.Fatalf("bootstrap: %+v, meta %+v, %v", res, meta, err)
	}
}
