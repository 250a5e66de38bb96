package scenario

import (
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redbandit/redbandit/model/spec"
)

// Files written by Generate.
const (
	CatalogueFile = "catalogue.csv"
	UsersFile     = "users.csv"
	LogFile       = "training_log.csv"
)

// LogEvents is the number of events in the generated training log.
const LogEvents = 10000

// DefaultNow anchors generated timestamps ("the last 7 days" before it), so
// that a seed gives the same files whenever they are generated.
var DefaultNow = time.Date(2026, time.January, 12, 0, 0, 0, 0, ShopZone)

// Generate writes the catalogue, the users and a training log of LogEvents
// historical events to dir, all from seed: each event is a random user
// visiting at a random time in the 7 days before now, shown a uniformly
// random product, and clicking it with the ground truth's probability. The
// log's context columns are the reference spec's features, in the layout
// `redbandit bootstrap` reads.
func Generate(dir string, seed uint64, now time.Time) error {
	return generate(dir, seed, now, func(Product) bool { return true })
}

// generate is Generate with a log that shows only the products shown
// reports true for.
func generate(dir string, seed uint64, now time.Time, shown func(Product) bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("datagen: %w", err)
	}
	cat := Catalogue(seed)
	users := Users(seed)
	if err := writeCSV(filepath.Join(dir, CatalogueFile), catalogueRows(cat)); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(dir, UsersFile), userRows(users)); err != nil {
		return err
	}
	var inLog []Product
	for _, p := range cat {
		if shown(p) {
			inLog = append(inLog, p)
		}
	}
	rows, err := logRows(cat, inLog, users, seed, now)
	if err != nil {
		return err
	}
	return writeCSV(filepath.Join(dir, LogFile), rows)
}

func catalogueRows(cat []Product) [][]string {
	rows := [][]string{{"product_id", "name", "category", "price", "is_coffee"}}
	for _, p := range cat {
		rows = append(rows, []string{p.ID, p.Name, p.Category, strconv.FormatFloat(p.Price, 'f', 2, 64), strconv.FormatBool(p.IsCoffee)})
	}
	return rows
}

func userRows(users []User) [][]string {
	rows := [][]string{{"user_id", "age", "gender", "latitude", "longitude", "traffic_source"}}
	for _, u := range users {
		rows = append(rows, []string{u.ID, strconv.Itoa(u.Age), u.Gender,
			strconv.FormatFloat(u.Latitude, 'f', 6, 64), strconv.FormatFloat(u.Longitude, 'f', 6, 64), u.TrafficSource})
	}
	return rows
}

// logRows draws the log's events over the products shown (the click model
// scales prices over the whole catalogue cat).
func logRows(cat, shown []Product, users []User, seed uint64, now time.Time) ([][]string, error) {
	sp := spec.Reference()
	truth := NewTruth(cat)
	rng := rand.New(rand.NewPCG(seed, 0x106))
	header := append([]string{"event_id"}, sp.Names()...)
	rows := [][]string{append(header, "product_id", "response")}
	for i := 0; i < LogEvents; i++ {
		u := users[rng.IntN(len(users))]
		p := shown[rng.IntN(len(shown))]
		at := RandomTime(rng, now)
		x, err := sp.Encode(u.Attributes(at))
		if err != nil {
			return nil, fmt.Errorf("datagen: encode a visit: %w", err)
		}
		click := "0"
		if rng.Float64() < truth.Prob(u, p, at) {
			click = "1"
		}
		row := []string{fmt.Sprintf("h%05d", i+1)}
		for _, v := range x {
			row = append(row, strconv.FormatFloat(v, 'g', -1, 64))
		}
		rows = append(rows, append(row, p.ID, click))
	}
	return rows, nil
}

func writeCSV(path string, rows [][]string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("datagen: %w", err)
	}
	w := csv.NewWriter(f)
	if err := w.WriteAll(rows); err != nil {
		f.Close()
		return fmt.Errorf("datagen: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("datagen: %w", err)
	}
	return nil
}
