package scenario

import (
	"fmt"
	"strconv"
	"time"
)

// Scenarios of the simulator and the demo: how the shop changes around the
// bandit. The default (Steady) is the shop of the package comment.
const (
	// Steady: the whole catalogue is in the history, tastes never change.
	Steady = "steady"
	// NewProducts: the six coffees are missing from the history (the log
	// never shows one), as products launched after it; the demo registers
	// them when the visits start.
	NewProducts = "new-products"
	// Drift: at DriftAt of the visits the ground truth becomes
	// Truth.Drifted — coffee in the evening rather than the morning, and no
	// weekend boost for pizza.
	Drift = "drift"
)

// DriftAt is the fraction of the visits after which the drift scenario's
// tastes change: visit 10,000 of 20,000.
const DriftAt = 0.5

// DriftHalfLife is the half-life, in events per product, with which the
// drift scenario's model forgets (docs/OPERATIONS.md, "Forgetting"). On the
// reference shop with α 0.1 an arm gets about 300 events in 20,000 visits,
// a coffee thousands; 100 keeps ~144 events' worth of evidence per arm.
const DriftHalfLife = 100

// CheckScenario returns an error unless name is a scenario ("" is Steady).
func CheckScenario(name string) error {
	switch name {
	case "", Steady, NewProducts, Drift:
		return nil
	}
	return fmt.Errorf("scenario: unknown scenario %q (%s, %s or %s)", name, Steady, NewProducts, Drift)
}

// InHistory reports whether p appears in the scenario's history: every
// product but the coffees with NewProducts.
func InHistory(name string, p Product) bool {
	return name != NewProducts || !p.IsCoffee
}

// Launched returns the products of cat the scenario launches after the
// history (the coffees with NewProducts, none otherwise).
func Launched(name string, cat []Product) []Product {
	var out []Product
	for _, p := range cat {
		if !InHistory(name, p) {
			out = append(out, p)
		}
	}
	return out
}

// Attributes returns the product's attributes as a catalogue stores them:
// category, price (decimal) and is_coffee ("true" or "false").
func (p Product) Attributes() map[string]string {
	return map[string]string{"category": p.Category, "price": strconv.FormatFloat(p.Price, 'f', 2, 64),
		"is_coffee": strconv.FormatBool(p.IsCoffee)}
}

// GenerateScenario is Generate for a scenario: the catalogue and users are
// the same, the log shows only the products in the scenario's history.
func GenerateScenario(dir string, seed uint64, now time.Time, name string) error {
	if err := CheckScenario(name); err != nil {
		return err
	}
	return generate(dir, seed, now, func(p Product) bool { return InHistory(name, p) })
}
