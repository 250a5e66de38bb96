// Package scenario is the reference shop redbandit is demonstrated and
// tested on: a catalogue of about 200 food products, 1,000 synthetic users,
// the hidden click model ("ground truth") that decides whether a user clicks
// a product, and a generator of historical feedback logs.
//
// Everything is generated from a seed, so a seed gives the same files on
// every machine.
package scenario

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Product is one item of the catalogue.
type Product struct {
	ID       string
	Name     string
	Category string
	Price    float64 // dollars
	IsCoffee bool
}

// User is one synthetic visitor.
type User struct {
	ID            string
	Age           int
	Gender        string // "F" or "M"
	Latitude      float64
	Longitude     float64
	TrafficSource string
}

// Categories of the catalogue.
const (
	Burgers  = "Burgers & Sandwiches"
	Pizzas   = "Pizzas"
	Drinks   = "Drinks & Desserts"
	Salads   = "Salads & Bowls"
	Asian    = "Noodles & Rice"
	Mexican  = "Tacos & Burritos"
	Brunch   = "Breakfast & Brunch"
	Sides    = "Sides & Snacks"
	NumUsers = 1000
)

// Traffic sources and their weights.
var (
	TrafficSources = []string{"Search", "Organic", "Facebook", "Email", "Display"}
	trafficWeights = []float64{0.70, 0.15, 0.06, 0.05, 0.04}
)

// The city the users live around (Melbourne) and how far they spread.
const (
	cityLat, cityLon = -37.8136, 144.9631
	spreadDeg        = 0.08
)

// menu lists, per category, name parts and a price range; names are the
// cross product of adjectives and dishes, so they are our own and plentiful.
var menu = []struct {
	category   string
	adjectives []string
	dishes     []string
	min, max   float64
	count      int
}{
	{Burgers, []string{"Smoky", "Classic", "Double", "Crispy", "Spicy", "Truffle"}, []string{"Beef Burger", "Chicken Burger", "Pulled Pork Bun", "Veggie Burger", "Club Sandwich", "Reuben"}, 11, 24, 30},
	{Pizzas, []string{"Wood-fired", "Thin-crust", "Loaded", "Garden", "Fiery", "Four-cheese"}, []string{"Margherita", "Pepperoni", "Capricciosa", "Hawaiian", "Supreme", "Prosciutto"}, 14, 32, 30},
	{Drinks, []string{"Iced", "Salted", "Fresh", "Double", "Vanilla", "Dark"}, []string{"Lemonade", "Milkshake", "Brownie", "Cheesecake", "Gelato", "Smoothie"}, 4, 14, 24},
	{Salads, []string{"Green", "Roasted", "Grilled", "Harvest", "Zesty", "Poke"}, []string{"Caesar", "Quinoa Bowl", "Chicken Salad", "Falafel Bowl", "Salmon Bowl", "Greek Salad"}, 12, 22, 24},
	{Asian, []string{"Wok-tossed", "Sticky", "Chilli", "Garlic", "Sesame", "Coconut"}, []string{"Pad Thai", "Fried Rice", "Ramen", "Laksa", "Dumplings", "Teriyaki Don"}, 13, 26, 28},
	{Mexican, []string{"Smoky", "Loaded", "Baja", "Chipotle", "Street", "Grilled"}, []string{"Beef Taco", "Fish Taco", "Burrito", "Quesadilla", "Nachos", "Enchilada"}, 9, 21, 24},
	{Brunch, []string{"Big", "Smashed", "Sunny", "Buttermilk", "Bircher", "Eggs"}, []string{"Breakfast", "Avo Toast", "Pancakes", "Muesli", "Benedict", "Omelette"}, 10, 25, 24},
	{Sides, []string{"Crispy", "Cheesy", "Sweet", "Herbed", "Spiced", "Golden"}, []string{"Fries", "Wedges", "Onion Rings", "Garlic Bread", "Wings", "Slaw"}, 5, 13, 12},
}

// coffees are the coffee drinks, all in Drinks & Desserts.
var coffees = []string{"Flat White", "Cappuccino", "Long Black", "Latte", "Iced Latte", "Mocha"}

// Catalogue returns the product catalogue for a seed: 202 products across
// eight categories, six of them coffee drinks. Ids are "p001".."p202".
func Catalogue(seed uint64) []Product {
	rng := rand.New(rand.NewPCG(seed, 0xCA7A))
	var out []Product
	add := func(name, category string, price float64, coffee bool) {
		out = append(out, Product{ID: fmt.Sprintf("p%03d", len(out)+1), Name: name, Category: category,
			Price: math.Round(price*2) / 2, IsCoffee: coffee})
	}
	for _, m := range menu {
		perm := rng.Perm(len(m.adjectives) * len(m.dishes))
		for _, k := range perm[:m.count] {
			name := m.adjectives[k/len(m.dishes)] + " " + m.dishes[k%len(m.dishes)]
			add(name, m.category, m.min+(m.max-m.min)*rng.Float64(), false)
		}
	}
	for _, c := range coffees {
		add(c, Drinks, 4+2.5*rng.Float64(), true)
	}
	return out
}

// Users returns NumUsers synthetic users for a seed: age uniform in 16–70,
// gender M/F even, a location normally spread around the city, and a traffic
// source drawn with weights Search .70, Organic .15, Facebook .06, Email .05,
// Display .04.
func Users(seed uint64) []User {
	rng := rand.New(rand.NewPCG(seed, 0x05E5))
	out := make([]User, NumUsers)
	for i := range out {
		g := "F"
		if rng.IntN(2) == 1 {
			g = "M"
		}
		out[i] = User{
			ID:            fmt.Sprintf("u%04d", i+1),
			Age:           16 + rng.IntN(55),
			Gender:        g,
			Latitude:      cityLat + spreadDeg*rng.NormFloat64(),
			Longitude:     cityLon + spreadDeg*rng.NormFloat64(),
			TrafficSource: TrafficSources[pick(rng, trafficWeights)],
		}
	}
	return out
}

func pick(rng *rand.Rand, weights []float64) int {
	u := rng.Float64()
	for i, w := range weights {
		if u < w {
			return i
		}
		u -= w
	}
	return len(weights) - 1
}

// Attributes returns the raw attributes of a visit by u at t, as the
// reference feature spec encodes them.
func (u User) Attributes(t time.Time) map[string]any {
	return map[string]any{
		"age": float64(u.Age), "latitude": u.Latitude, "longitude": u.Longitude,
		"gender": u.Gender, "traffic_source": u.TrafficSource, "timestamp": t.Format(time.RFC3339),
	}
}

// RandomTime returns a uniformly random instant in the 7 days before now,
// in the shop's time zone.
func RandomTime(rng *rand.Rand, now time.Time) time.Time {
	return now.Add(-time.Duration(rng.Int64N(int64(7 * 24 * time.Hour)))).In(ShopZone)
}

// ShopZone is the shop's time zone.
var ShopZone = mustZone("Australia/Melbourne")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // time/tzdata is linked by package spec
	}
	return loc
}
