package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// ShopFeatures returns the context layout of the reference shop: three
// continuous features in (0, 1], then four one-hot groups (ShopGroups), so
// every context has exactly 7 non-zero entries.
func ShopFeatures() []string {
	return []string{
		"age", "latitude", "longitude",
		"gender_female", "gender_male",
		"source_direct", "source_search", "source_social", "source_email", "source_ads",
		"time_morning", "time_afternoon", "time_evening",
		"day_weekday", "day_weekend",
	}
}

// ShopGroups returns the one-hot groups of ShopFeatures, as feature
// indexes: gender (2), traffic source (5), time of day (3), weekday/weekend
// (2).
func ShopGroups() []model.Group {
	return []model.Group{
		{Features: []int{3, 4}}, {Features: []int{5, 6, 7, 8, 9}}, {Features: []int{10, 11, 12}}, {Features: []int{13, 14}},
	}
}

// shopDim is the reference shop's dimension.
const shopDim = 15

// productID is the id of a synthetic model's i-th product.
func productID(i int) string { return "p" + strconv.Itoa(i) }

// Catalog is what the load driver knows of the model under test.
type Catalog struct {
	Model  string
	Dim    int
	Groups []model.Group // one-hot groups; nil if none
	IDs    []string      // product ids in arm-index order
	index  map[string]int
	// Params are the arms' θ and A⁻¹ for a synthetic model (nil for an
	// existing one), for reference scoring in tests.
	Params []linucb.Params
}

func (cat *Catalog) buildIndex() {
	cat.index = make(map[string]int, len(cat.IDs))
	for i, id := range cat.IDs {
		cat.index[id] = i
	}
}

// contextGen draws request contexts for a catalogue: with one-hot groups,
// every feature outside the groups in (0, 1] and one feature of each group
// set to 1 (or, for an optional group, none with probability 1/(size+1));
// without, nonzero random features in (0, 1].
type contextGen struct {
	d       int
	groups  []model.Group
	cont    []int // features in no group
	nonzero int
	perm    []int // scratch for choosing features
}

func newContextGen(d int, groups []model.Group, nonzero int) *contextGen {
	g := &contextGen{d: d, groups: groups, nonzero: min(nonzero, d), perm: make([]int, d)}
	in := make([]bool, d)
	for _, grp := range groups {
		for _, f := range grp.Features {
			in[f] = true
		}
	}
	for i := range d {
		if !in[i] {
			g.cont = append(g.cont, i)
		}
		g.perm[i] = i
	}
	return g
}

// fill writes a random context into x (of length d).
func (g *contextGen) fill(rng *mrand.Rand, x []float64) {
	clear(x)
	if len(g.groups) > 0 {
		for _, c := range g.cont {
			x[c] = 1 - rng.Float64()
		}
		for _, grp := range g.groups {
			n := len(grp.Features)
			if grp.Optional {
				n++
			}
			if i := rng.IntN(n); i < len(grp.Features) {
				x[grp.Features[i]] = 1
			}
		}
		return
	}
	for i := range g.nonzero { // partial Fisher–Yates over the feature indexes
		j := i + rng.IntN(g.d-i)
		g.perm[i], g.perm[j] = g.perm[j], g.perm[i]
		x[g.perm[i]] = 1 - rng.Float64()
	}
}

// syntheticName returns a unique model name with the given prefix.
func syntheticName(prefix string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random model name: %w", err)
	}
	return prefix + "-loadtest-" + hex.EncodeToString(b[:]), nil
}

// createModel trains products arms of dimension d on seeded random events
// (20–80 each, Bernoulli rewards whose probability depends on the context
// through a per-arm hidden weight vector) and writes them as model name with
// store.Write, in chunks. With d = 15 the model has the reference shop's
// features and one-hot groups; otherwise features f1…fd and no groups, and
// the training contexts have nonzero non-zero entries.
func createModel(ctx context.Context, c rueidis.Client, name string, products, d, nonzero int, seed uint64) (*Catalog, error) {
	cat := &Catalog{Model: name, Dim: d, IDs: make([]string, products), Params: make([]linucb.Params, products)}
	var features []string
	if d == shopDim {
		features, cat.Groups = ShopFeatures(), ShopGroups()
	} else {
		features = make([]string, d)
		for i := range features {
			features[i] = "f" + strconv.Itoa(i+1)
		}
	}
	gen := newContextGen(d, cat.Groups, nonzero)
	rng := mrand.New(mrand.NewPCG(seed, uint64(products)))
	x := make([]float64, d)
	w := make([]float64, d)
	// Chunks of whole column blocks, smaller for large d so that one write
	// script call carries about 16 MB of A and A⁻¹ at most.
	chunk := max(1, min(store.DefaultBlock, (16<<20)/(16*d*d)))
	batch := make([]store.ArmWrite, 0, chunk)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		wr := store.Write{Model: name, Features: features, Groups: cat.Groups, Lambda: linucb.DefaultLambda, Arms: batch}
		for _, a := range batch {
			wr.Events += a.Arm.N()
			wr.Rewards += a.Arm.Rewards()
		}
		if _, err := wr.Apply(ctx, c); err != nil {
			return fmt.Errorf("write synthetic model %s: %w", name, err)
		}
		batch = batch[:0]
		return nil
	}
	for a := range products {
		arm := linucb.NewArm(d, linucb.DefaultLambda)
		base := 0.02 + 0.1*rng.Float64()
		for i := range w {
			w[i] = 0.1 * rng.NormFloat64()
		}
		for range 20 + rng.IntN(61) {
			gen.fill(rng, x)
			p := base
			for i, xi := range x {
				p += w[i] * xi
			}
			r := 0.0
			if rng.Float64() < p {
				r = 1
			}
			if err := arm.Update(x, r); err != nil {
				return nil, fmt.Errorf("train synthetic arm %d: %w", a, err)
			}
		}
		params, err := arm.Solve()
		if err != nil {
			return nil, fmt.Errorf("solve synthetic arm %d: %w", a, err)
		}
		cat.IDs[a] = productID(a)
		cat.Params[a] = params
		batch = append(batch, store.ArmWrite{ID: cat.IDs[a], Arm: arm, Params: params})
		if len(batch) == chunk {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	meta, err := store.ReadMeta(ctx, c, name)
	if err != nil {
		return nil, fmt.Errorf("check synthetic model: %w", err)
	}
	if meta.Arms != products || meta.Dim != d {
		return nil, fmt.Errorf("synthetic model %s has %d arms of dimension %d, want %d of %d", name, meta.Arms, meta.Dim, products, d)
	}
	cat.buildIndex()
	return cat, nil
}

// readCatalog reads an existing model's dimension, groups and product ids.
func readCatalog(ctx context.Context, c rueidis.Client, model string) (*Catalog, error) {
	meta, err := store.ReadMeta(ctx, c, model)
	if err != nil {
		return nil, fmt.Errorf("read model %s: %w", model, err)
	}
	if meta.Arms < 1 {
		return nil, fmt.Errorf("model %s has no products", model)
	}
	ids, err := store.ReadProducts(ctx, c, model, meta.Arms)
	if err != nil {
		return nil, err
	}
	cat := &Catalog{Model: model, Dim: meta.Dim, Groups: meta.Groups, IDs: ids}
	cat.buildIndex()
	return cat, nil
}

// deleteModel unlinks the root hash and every arm hash of cat's model.
func deleteModel(ctx context.Context, c rueidis.Client, cat *Catalog) error {
	keys := make([]string, 0, len(cat.IDs)+1)
	keys = append(keys, store.RootKey(cat.Model))
	for _, id := range cat.IDs {
		keys = append(keys, store.ArmKey(cat.Model, id))
	}
	for lo := 0; lo < len(keys); lo += 1000 {
		hi := min(lo+1000, len(keys))
		if err := c.Do(ctx, c.B().Unlink().Key(keys[lo:hi]...).Build()).Error(); err != nil {
			return fmt.Errorf("delete model %s: %w", cat.Model, err)
		}
	}
	return nil
}

// cleanupTimeout bounds the deletion of a synthetic model after a run,
// which goes ahead even when the run's context was cancelled.
const cleanupTimeout = 30 * time.Second
