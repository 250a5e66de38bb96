package scenario

import (
	"math"
	"time"
)

// Truth is the hidden click model: users never see it, the bandit has to
// learn it from clicks. For a visit by user u at time t and product p:
//
//	logit = −2.5
//	      + 2.5 if the visit is in the morning (06:00–12:00 local) and p is coffee
//	      + 1.8 on weekends (Saturday, Sunday local) if p is a pizza or a burger/sandwich
//	      − 3.0 if the scaled age < 0.25 and the scaled price > 0.8
//	      + 0.5 if the user came from Search
//	P(click) = sigmoid(logit)
//
// Ages scale as the reference spec does, (age − 16)/54; prices min-max over
// the catalogue.
//
// The drifted truth (Drifted, the drift scenario's after the change) moves
// the coffee boost to the evening (18:00–24:00) and takes the weekend boost
// away from pizzas (burgers and sandwiches keep it).
type Truth struct {
	minPrice, maxPrice float64
	drifted            bool
}

// NewTruth returns the click model for a catalogue.
func NewTruth(catalogue []Product) *Truth {
	t := &Truth{minPrice: math.Inf(1), maxPrice: math.Inf(-1)}
	for _, p := range catalogue {
		t.minPrice = math.Min(t.minPrice, p.Price)
		t.maxPrice = math.Max(t.maxPrice, p.Price)
	}
	return t
}

// Drifted returns the click model after the drift scenario's change of
// tastes: coffee in the evening instead of the morning, pizza without its
// weekend boost; everything else as t.
func (t *Truth) Drifted() *Truth {
	d := *t
	d.drifted = true
	return &d
}

// ScaledPrice is p's price min-max scaled over the catalogue.
func (t *Truth) ScaledPrice(p Product) float64 {
	return (p.Price - t.minPrice) / (t.maxPrice - t.minPrice)
}

// ScaledAge is an age scaled like the reference spec's: (age − 16)/54,
// clamped to [0, 1].
func ScaledAge(age int) float64 {
	return math.Min(1, math.Max(0, float64(age-16)/54))
}

// Logit returns the click log-odds of u for p at t (t in any zone; the
// shop's local time decides morning and weekend).
func (t *Truth) Logit(u User, p Product, at time.Time) float64 {
	local := at.In(ShopZone)
	logit := -2.5
	coffeeFrom, coffeeTo := 6, 12
	if t.drifted {
		coffeeFrom, coffeeTo = 18, 24
	}
	if h := local.Hour(); h >= coffeeFrom && h < coffeeTo && p.IsCoffee {
		logit += 2.5
	}
	if wd := local.Weekday(); (wd == time.Saturday || wd == time.Sunday) && (p.Category == Burgers || p.Category == Pizzas && !t.drifted) {
		logit += 1.8
	}
	if ScaledAge(u.Age) < 0.25 && t.ScaledPrice(p) > 0.8 {
		logit -= 3.0
	}
	if u.TrafficSource == "Search" {
		logit += 0.5
	}
	return logit
}

// Prob returns the probability that u clicks p at t.
func (t *Truth) Prob(u User, p Product, at time.Time) float64 {
	return 1 / (1 + math.Exp(-t.Logit(u, p, at)))
}
