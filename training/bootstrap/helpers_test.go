package bootstrap_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"gonum.org/v1/gonum/mat"

	"github.com/redbandit/redbandit/model/store"
)

// row is one event of a generated log.
type row struct {
	id, product string
	x           []float64
	r           float64
}

// genRows returns n random events over the given number of products (chosen
// with a skew, so some products get few events), with event ids
// prefix-0, prefix-1, ... Contexts are sparse-ish normal values; rewards are
// mostly 0 or 1 with some fractions.
func genRows(seed uint64, d, products, n int, prefix string) []row {
	rng := rand.New(rand.NewPCG(seed, uint64(d*1000+products)))
	rows := make([]row, n)
	for i := range rows {
		u := rng.Float64()
		x := make([]float64, d)
		for j := range x {
			if rng.Float64() < 0.6 {
				x[j] = rng.NormFloat64()
			}
		}
		r := float64(rng.IntN(2))
		if rng.IntN(10) == 0 {
			r = []float64{0.25, 0.5, 0.75}[rng.IntN(3)]
		}
		rows[i] = row{id: fmt.Sprintf("%s-%d", prefix, i), product: fmt.Sprintf("p%02d", int(float64(products)*u*u)), x: x, r: r}
	}
	return rows
}

// render writes rows as a CSV log, with some spaces around fields to
// exercise trimming. Numbers use the shortest exact decimal form.
func render(features []string, rows []row) []byte {
	var b bytes.Buffer
	b.WriteString("event_id," + strings.Join(features, ",") + ",product_id,response\n")
	for i, r := range rows {
		sep := ","
		if i%5 == 1 {
			sep = ", "
		}
		fields := []string{r.id}
		for _, v := range r.x {
			fields = append(fields, strconv.FormatFloat(v, 'g', -1, 64))
		}
		fields = append(fields, r.product, strconv.FormatFloat(r.r, 'g', -1, 64))
		line := strings.Join(fields, sep)
		if i%7 == 3 {
			line += "  "
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes()
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// refArm is an arm computed from scratch in the test.
type refArm struct {
	a, b []float64
	n    int64
	r    float64 // Σ r
}

// refModel is the state a model should have after some logs, computed with
// plain loops (not linucb.Update): A = λI + Σxxᵀ, b = Σrx per product.
type refModel struct {
	d       int
	lambda  float64
	order   []string // products in arm-index order: by log, then product id
	arms    map[string]*refArm
	events  int64
	rewards float64
}

// reference computes the model after bootstrapping logs one after the
// other. The products a log adds get their arm indexes, which order equal
// scores, in product-id order.
func reference(d int, lambda float64, logs ...[]row) *refModel {
	return referenceForgetting(d, lambda, 0, logs...)
}

// referenceForgetting is reference with a half-life of h events (0: none):
// before each event its product's A − λI and b fade by 2^(−1/h).
func referenceForgetting(d int, lambda, h float64, logs ...[]row) *refModel {
	m := &refModel{d: d, lambda: lambda, arms: map[string]*refArm{}}
	for _, rows := range logs {
		added := len(m.order)
		for _, r := range rows {
			arm := m.arms[r.product]
			if arm == nil {
				arm = &refArm{a: make([]float64, d*d), b: make([]float64, d)}
				for i := 0; i < d; i++ {
					arm.a[i*d+i] = lambda
				}
				m.arms[r.product] = arm
				m.order = append(m.order, r.product)
			}
			if h > 0 {
				g := math.Pow(0.5, 1/h)
				for i := 0; i < d; i++ {
					for j := 0; j < d; j++ {
						arm.a[i*d+j] *= g
					}
					arm.a[i*d+i] += (1 - g) * lambda
					arm.b[i] *= g
				}
			}
			for i := 0; i < d; i++ {
				for j := 0; j < d; j++ {
					arm.a[i*d+j] += r.x[i] * r.x[j]
				}
				arm.b[i] += r.r * r.x[i]
			}
			arm.n++
			arm.r += r.r
			m.events++
			m.rewards += r.r
		}
		slices.Sort(m.order[added:])
	}
	return m
}

func relClose(got, want, tol float64) bool {
	scale := math.Max(1e-300, math.Max(math.Abs(got), math.Abs(want)))
	return math.Abs(got-want) <= tol*scale
}

// checkModel compares the stored model with the reference: metadata, and
// every arm's A and b within 1e-9 relative and n exactly.
func checkModel(t *testing.T, c rueidis.Client, model string, features []string, ref *refModel) {
	t.Helper()
	ctx := context.Background()
	meta, err := store.ReadMeta(ctx, c, model)
	if err != nil {
		t.Fatalf("read meta: %v", err)
	}
	if meta.Dim != ref.d || !slices.Equal(meta.Features, features) || meta.Lambda != ref.lambda ||
		meta.Arms != len(ref.order) || meta.Events != ref.events || !relClose(meta.Rewards, ref.rewards, 1e-12) {
		t.Fatalf("meta %+v, want dim %d features %q lambda %v arms %d events %d rewards %v",
			meta, ref.d, features, ref.lambda, len(ref.order), ref.events, ref.rewards)
	}
	stored, err := store.ReadArms(ctx, c, model, ref.d, ref.lambda, ref.order)
	if err != nil {
		t.Fatalf("read arms: %v", err)
	}
	for _, s := range stored {
		want := ref.arms[s.ID]
		if s.Version == 0 {
			t.Fatalf("arm %s is not stored", s.ID)
		}
		if s.Arm.N() != want.n || !relClose(s.Arm.Rewards(), want.r, 1e-12) {
			t.Fatalf("arm %s: n = %d, rewards %v, want %d, %v", s.ID, s.Arm.N(), s.Arm.Rewards(), want.n, want.r)
		}
		for i, v := range s.Arm.A() {
			if !relClose(v, want.a[i], 1e-9) {
				t.Fatalf("arm %s: A[%d] = %v, want %v", s.ID, i, v, want.a[i])
			}
		}
		for i, v := range s.Arm.B() {
			if !relClose(v, want.b[i], 1e-9) {
				t.Fatalf("arm %s: b[%d] = %v, want %v", s.ID, i, v, want.b[i])
			}
		}
	}
}

// rank is the brute-force top k: θ = A⁻¹b with A inverted by LU
// (mat.Dense.Inverse), score = xᵀθ + α√(xᵀA⁻¹x), best first, ties in arm
// order.
func (m *refModel) rank(t *testing.T, x []float64, alpha float64, k int) []store.Item {
	t.Helper()
	xv := mat.NewVecDense(m.d, slices.Clone(x))
	items := make([]store.Item, 0, len(m.order))
	for _, id := range m.order {
		arm := m.arms[id]
		var inv mat.Dense
		if err := inv.Inverse(mat.NewDense(m.d, m.d, slices.Clone(arm.a))); err != nil {
			t.Fatalf("invert A of %s: %v", id, err)
		}
		var theta, ax mat.VecDense
		theta.MulVec(&inv, mat.NewVecDense(m.d, slices.Clone(arm.b)))
		ax.MulVec(&inv, xv)
		q := math.Max(mat.Dot(xv, &ax), 0)
		items = append(items, store.Item{ID: id, Score: mat.Dot(xv, &theta) + alpha*math.Sqrt(q)})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].Score > items[j].Score })
	if k < len(items) {
		items = items[:k]
	}
	return items
}

// checkRecommend compares store.Recommend with the brute-force ranking for
// a few random contexts, exploration weights and k.
func checkRecommend(t *testing.T, c rueidis.Client, model string, ref *refModel, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 99))
	for trial := 0; trial < 9; trial++ {
		x := make([]float64, ref.d)
		for i := range x {
			if trial%3 == 0 || rng.Float64() < 0.5 {
				x[i] = rng.NormFloat64()
			}
		}
		alpha := []float64{0.1, 1, 0}[trial%3]
		k := []int{5, 1, len(ref.order) + 2}[trial/3]
		got, err := store.Recommend(context.Background(), c, model, store.Query{K: k, Alpha: alpha, Context: x})
		if err != nil {
			t.Fatalf("recommend: %v", err)
		}
		want := ref.rank(t, x, alpha, k)
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d items, want %d", trial, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || !relClose(got[i].Score, want[i].Score, 1e-9) {
				t.Fatalf("trial %d (x=%v alpha=%v k=%d): item %d = %v, want %v\ngot  %v\nwant %v",
					trial, x, alpha, k, i, got[i], want[i], got, want)
			}
		}
	}
}

// snapshot returns every key of the model and its hash contents.
func snapshot(t *testing.T, c rueidis.Client, model string) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Do(ctx, c.B().Keys().Pattern(store.RootKey(model)+"*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, k := range keys {
		h, err := c.Do(ctx, c.B().Hgetall().Key(k).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = h
	}
	return out
}

func requireEmpty(t *testing.T, c rueidis.Client, model string) {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Exists().Key(store.RootKey(model)).Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("EXISTS %s = %d, want 0", store.RootKey(model), n)
	}
	if s := snapshot(t, c, model); len(s) != 0 {
		t.Fatalf("model %s has keys after a failed run: %v", model, slices.Sorted(maps.Keys(s)))
	}
}

func sum(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

var features4 = []string{"age", "tenure", "is_mobile", "hour_sin"}
