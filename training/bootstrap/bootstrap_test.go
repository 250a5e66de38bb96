package bootstrap_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/rueidis"
	"gonum.org/v1/gonum/mat"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/csvlog"
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

func TestMaxFeaturesIsMaxDim(t *testing.T) {
	if csvlog.MaxFeatures != store.MaxDim {
		t.Fatalf("csvlog.MaxFeatures = %d, store.MaxDim = %d", csvlog.MaxFeatures, store.MaxDim)
	}
}

// TestMatchesReference bootstraps random logs and compares every stored arm
// and the scoring script's rankings with a from-scratch computation.
func TestMatchesReference(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	cases := []struct {
		name             string
		features         []string
		lambda           float64 // 0: default
		products, events int
	}{
		{"d=4", features4, 0, 30, 2000},
		{"d=1 lambda=0.25", []string{"only"}, 0.25, 7, 300},
		{"d=9 lambda=3", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, 3, 50, 1500},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := len(tc.features)
			rows := genRows(uint64(42+i), d, tc.products, tc.events, "e")
			data := render(tc.features, rows)
			model := fmt.Sprintf("ref%d", i)
			res, err := bootstrap.Run(ctx, c, writeFile(t, data), bootstrap.Config{Model: model, Lambda: tc.lambda})
			if err != nil {
				t.Fatal(err)
			}
			lambda := tc.lambda
			if lambda == 0 {
				lambda = linucb.DefaultLambda
			}
			ref := reference(d, lambda, rows)
			want := bootstrap.Result{Rows: int64(tc.events), Events: int64(tc.events), Products: len(ref.order), SHA256: sum(data), Attempts: 1}
			if res != want {
				t.Fatalf("result %+v, want %+v", res, want)
			}
			checkModel(t, c, model, tc.features, ref)
			checkRecommend(t, c, model, ref, uint64(i))

			rec, ok, err := bootstrap.ReadRecord(ctx, c, model, sum(data))
			if err != nil || !ok {
				t.Fatalf("record: %v, %v", ok, err)
			}
			if rec.Rows != int64(tc.events) || rec.Events != int64(tc.events) || rec.Skipped != 0 || rec.Products != len(ref.order) || rec.At.IsZero() {
				t.Fatalf("record %+v", rec)
			}
		})
	}
}

// TestIdempotent runs the same log twice (the second run changes nothing),
// then another log, which adds on top.
func TestIdempotent(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "idem"
	rowsA := genRows(1, 4, 30, 2000, "a")
	dataA := render(features4, rowsA)
	pathA := writeFile(t, dataA)
	if _, err := bootstrap.Run(ctx, c, pathA, bootstrap.Config{Model: model}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, c, model)

	res, err := bootstrap.Run(ctx, c, pathA, bootstrap.Config{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if want := (bootstrap.Result{AlreadyApplied: true, SHA256: sum(dataA)}); res != want {
		t.Fatalf("second run: %+v, want %+v", res, want)
	}
	// Through a reader that cannot seek, the record is checked after parsing.
	res, err = bootstrap.RunReader(ctx, c, struct{ io.Reader }{bytes.NewReader(dataA)}, "stdin", bootstrap.Config{Model: model})
	if err != nil || !res.AlreadyApplied || res.SHA256 != sum(dataA) {
		t.Fatalf("non-seekable rerun: %+v, %v; want AlreadyApplied", res, err)
	}
	if after := snapshot(t, c, model); !reflect.DeepEqual(after, before) {
		t.Fatal("a repeated run changed the model")
	}
	checkModel(t, c, model, features4, reference(4, 1, rowsA))

	// Another log (some of the same products, new ones too) adds on top.
	rowsB := genRows(2, 4, 40, 700, "b")
	dataB := render(features4, rowsB)
	// Through a reader that cannot seek, the log is hashed while parsed.
	res, err = bootstrap.RunReader(ctx, c, struct{ io.Reader }{bytes.NewReader(dataB)}, "b.csv", bootstrap.Config{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyApplied || res.Events != 700 || res.SHA256 != sum(dataB) {
		t.Fatalf("second log: %+v", res)
	}
	ref := reference(4, 1, rowsA, rowsB)
	checkModel(t, c, model, features4, ref)
	checkRecommend(t, c, model, ref, 5)
}

// TestConcurrentSameLog races several runs of one log: exactly one applies it.
func TestConcurrentSameLog(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	rows := genRows(3, 4, 30, 2000, "c")
	path := writeFile(t, render(features4, rows))
	const runs = 6
	var wg sync.WaitGroup
	results := make([]bootstrap.Result, runs)
	errs := make([]error, runs)
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = bootstrap.Run(context.Background(), c, path, bootstrap.Config{Model: "race"})
		}()
	}
	wg.Wait()
	applied := 0
	for i := range runs {
		if errs[i] != nil {
			t.Fatalf("run %d: %v", i, errs[i])
		}
		if !results[i].AlreadyApplied {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("%d runs applied the log, want 1: %+v", applied, results)
	}
	checkModel(t, c, "race", features4, reference(4, 1, rows))
}

// TestConflictRetry lets another writer change the same arms between the
// run's read and its write: the run retries from the new state.
func TestConflictRetry(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "retry"
	rowsA := genRows(10, 4, 20, 500, "a")
	rowsB := genRows(11, 4, 20, 500, "b")
	rowsC := genRows(12, 4, 25, 500, "c")
	if _, err := bootstrap.Run(ctx, c, writeFile(t, render(features4, rowsA)), bootstrap.Config{Model: model}); err != nil {
		t.Fatal(err)
	}
	pathC := writeFile(t, render(features4, rowsC))
	cfg := bootstrap.Config{Model: model}
	var attempts []int
	bootstrap.SetBeforeWrite(&cfg, func(attempt int) {
		attempts = append(attempts, attempt)
		if attempt == 1 {
			if _, err := bootstrap.Run(ctx, c, pathC, bootstrap.Config{Model: model}); err != nil {
				t.Errorf("interleaved run: %v", err)
			}
		}
	})
	res, err := bootstrap.Run(ctx, c, writeFile(t, render(features4, rowsB)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 || !slices.Equal(attempts, []int{1, 2}) || res.AlreadyApplied || res.Events != 500 {
		t.Fatalf("result %+v after attempts %v, want success on attempt 2", res, attempts)
	}
	// Arm order: A's products, then C's new ones, then B's.
	ref := reference(4, 1, rowsA, rowsC, rowsB)
	checkModel(t, c, model, features4, ref)
	checkRecommend(t, c, model, ref, 6)
}

// TestConflictGiveUp makes every attempt lose: the run fails with
// store.ErrConflict after MaxAttempts and leaves no record.
func TestConflictGiveUp(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "giveup"
	var logs [][]row
	cfg := bootstrap.Config{Model: model}
	bootstrap.SetBeforeWrite(&cfg, func(attempt int) {
		rows := genRows(uint64(100+attempt), 4, 5, 50, fmt.Sprintf("x%d", attempt))
		logs = append(logs, rows)
		if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, rows)), "other", bootstrap.Config{Model: model}); err != nil {
			t.Errorf("interleaved run: %v", err)
		}
	})
	data := render(features4, genRows(7, 4, 5, 50, "mine"))
	_, err := bootstrap.RunReader(ctx, c, bytes.NewReader(data), "mine", cfg)
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("error %v, want ErrConflict", err)
	}
	if len(logs) != bootstrap.MaxAttempts {
		t.Fatalf("%d attempts, want %d", len(logs), bootstrap.MaxAttempts)
	}
	if _, ok, err := bootstrap.ReadRecord(ctx, c, model, sum(data)); ok || err != nil {
		t.Fatalf("record of the failed log: %v, %v", ok, err)
	}
	checkModel(t, c, model, features4, reference(4, 1, logs...))
}

// TestRaceLostToSameLog lets a run of the same log win between the read and
// the write: the write's guard fails and the run reports AlreadyApplied.
func TestRaceLostToSameLog(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "twin"
	rows := genRows(20, 4, 10, 300, "t")
	path := writeFile(t, render(features4, rows))
	cfg := bootstrap.Config{Model: model}
	bootstrap.SetBeforeWrite(&cfg, func(attempt int) {
		if _, err := bootstrap.Run(ctx, c, path, bootstrap.Config{Model: model}); err != nil {
			t.Errorf("twin run: %v", err)
		}
	})
	res, err := bootstrap.Run(ctx, c, path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.AlreadyApplied || res.Events != 0 || res.Attempts != 1 {
		t.Fatalf("result %+v, want AlreadyApplied after 1 attempt", res)
	}
	checkModel(t, c, model, features4, reference(4, 1, rows))
}

// TestBadRows inserts each kind of malformed row into a good log: the run
// fails naming the line and writes nothing; with SkipBad the good rows are
// applied and the bad one counted.
func TestBadRows(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	features := []string{"x", "y", "z"}
	good := genRows(30, 3, 6, 60, "g")
	const at = 17 // the bad row follows good[at-1]; it is on line at+2
	cases := []struct {
		name string
		row  string
		msg  string
	}{
		{"too few columns", "bad,1,2,p1,1", "5 columns, the header has 6"},
		{"too many columns", "bad,1,2,3,4,p1,1", "7 columns, the header has 6"},
		{"non-numeric feature", "bad,1,two,3,p1,1", `"two" is not a number`},
		{"empty feature", "bad,1,,3,p1,1", "empty value"},
		{"NaN feature", "bad,NaN,2,3,p1,1", "not a finite number"},
		{"Inf feature", "bad,1,2,-Inf,p1,1", "not a finite number"},
		{"non-numeric response", "bad,1,2,3,p1,click", `"click" is not a number`},
		{"NaN response", "bad,1,2,3,p1,nan", "not a finite number"},
		{"response above 1", "bad,1,2,3,p1,2", "outside [0, 1]"},
		{"response below 0", "bad,1,2,3,p1,-1", "outside [0, 1]"},
		{"empty event_id", ",1,2,3,p1,1", "empty event_id"},
		{"empty product_id", "bad,1,2,3,,1", "empty product_id"},
		{"bare quote", `bad,1,2"",3,p1,1`, "malformed CSV"},
		{"duplicate event_id", good[4].id + ",1,2,3,p1,1", fmt.Sprintf("duplicate event_id %q, first on line 6", good[4].id)},
	}
	lines := strings.SplitAfter(string(render(features, good)), "\n")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data := strings.Join(lines[:at+1], "") + tc.row + "\n" + strings.Join(lines[at+1:], "")
			model := fmt.Sprintf("bad%d", i)
			input := func() io.Reader { // half the cases through a reader that cannot seek
				if i%2 == 1 {
					return struct{ io.Reader }{strings.NewReader(data)}
				}
				return strings.NewReader(data)
			}
			_, err := bootstrap.RunReader(ctx, c, input(), "log.csv", bootstrap.Config{Model: model})
			if !errors.Is(err, csvlog.ErrBadRow) {
				t.Fatalf("error %v, want ErrBadRow", err)
			}
			line := fmt.Sprintf("line %d", at+2)
			if !strings.Contains(err.Error(), line) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "log.csv") {
				t.Fatalf("error %q does not name log.csv, %s and %q", err, line, tc.msg)
			}
			requireEmpty(t, c, model)

			res, err := bootstrap.RunReader(ctx, c, input(), "log.csv", bootstrap.Config{Model: model, SkipBad: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Rows != int64(len(good)+1) || res.Events != int64(len(good)) || res.Skipped != 1 || res.SHA256 != sum([]byte(data)) {
				t.Fatalf("SkipBad result %+v, want %d rows, %d events, 1 skipped", res, len(good)+1, len(good))
			}
			checkModel(t, c, model, features, reference(3, 1, good))
			rec, _, err := bootstrap.ReadRecord(ctx, c, model, res.SHA256)
			if err != nil || rec.Skipped != 1 || rec.Rows != int64(len(good)+1) {
				t.Fatalf("record %+v, %v", rec, err)
			}
		})
	}

	t.Run("all kinds at once", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(lines[0])
		for i, l := range lines[1:] {
			b.WriteString(l)
			if i < len(cases) {
				b.WriteString(cases[i].row + "\n")
			}
		}
		var logBuf bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logBuf, nil))
		res, err := bootstrap.RunReader(ctx, c, strings.NewReader(b.String()), "all", bootstrap.Config{Model: "allbad", SkipBad: true, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		if res.Skipped != int64(len(cases)) || res.Events != int64(len(good)) {
			t.Fatalf("result %+v, want %d skipped and %d events", res, len(cases), len(good))
		}
		if n := strings.Count(logBuf.String(), "skipping bad row"); n != len(cases) {
			t.Fatalf("%d skipped rows logged, want %d:\n%s", n, len(cases), logBuf.String())
		}
		checkModel(t, c, "allbad", features, reference(3, 1, good))
	})
}

// TestBadHeader: a bad header fails even with SkipBad and writes nothing.
func TestBadHeader(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	for _, in := range []string{"", "id,x,product_id,response\ne,1,p,1\n", "event_id,x,x,product_id,response\n"} {
		_, err := bootstrap.RunReader(context.Background(), c, strings.NewReader(in), "h.csv", bootstrap.Config{Model: "h", SkipBad: true})
		if !errors.Is(err, csvlog.ErrBadHeader) {
			t.Fatalf("header %q: error %v, want ErrBadHeader", in, err)
		}
		requireEmpty(t, c, "h")
	}
}

// TestModelMismatch runs logs whose dimension, features or λ differ from an
// existing model's: each fails with store.ErrBadModel saying what differs,
// and the model is unchanged.
func TestModelMismatch(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "mm"
	if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, genRows(40, 4, 8, 200, "a"))), "base", bootstrap.Config{Model: model}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, c, model)
	cases := []struct {
		name     string
		features []string
		lambda   float64
		msg      string
	}{
		{"more features", append(slices.Clone(features4), "extra"), 0, "dimension 4, the file has 5"},
		{"fewer features", features4[:3], 0, "dimension 4, the file has 3"},
		{"renamed feature", []string{"age", "tenure", "is_tablet", "hour_sin"}, 0, `features ["age" "tenure" "is_mobile" "hour_sin"], the file has ["age" "tenure" "is_tablet" "hour_sin"]`},
		{"reordered features", []string{"tenure", "age", "is_mobile", "hour_sin"}, 0, "features"},
		{"lambda", features4, 2, "lambda 1, the config has 2"},
	}
	for i, tc := range cases {
		rows := genRows(uint64(50+i), len(tc.features), 8, 100, fmt.Sprintf("m%d", i))
		_, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(tc.features, rows)), "other", bootstrap.Config{Model: model, Lambda: tc.lambda})
		if !errors.Is(err, store.ErrBadModel) || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("%s: error %v, want ErrBadModel mentioning %q", tc.name, err, tc.msg)
		}
		if after := snapshot(t, c, model); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s: the failed run changed the model", tc.name)
		}
	}
}

// TestModelMismatchAtWrite creates the model with other features between the
// run's check and its write: the write script refuses, and nothing of the
// run is stored.
func TestModelMismatchAtWrite(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model = "late"
	other := []string{"u", "v"}
	otherRows := genRows(60, 2, 5, 100, "o")
	cfg := bootstrap.Config{Model: model}
	bootstrap.SetBeforeWrite(&cfg, func(int) {
		if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(other, otherRows)), "other", bootstrap.Config{Model: model}); err != nil {
			t.Errorf("interleaved run: %v", err)
		}
	})
	data := render(features4, genRows(61, 4, 5, 100, "l"))
	_, err := bootstrap.RunReader(ctx, c, bytes.NewReader(data), "late", cfg)
	if !errors.Is(err, store.ErrBadModel) {
		t.Fatalf("error %v, want ErrBadModel", err)
	}
	checkModel(t, c, model, other, reference(2, 1, otherRows))
	if _, ok, _ := bootstrap.ReadRecord(ctx, c, model, sum(data)); ok {
		t.Fatal("the refused log is recorded")
	}
}

// TestHugeFeature: a feature whose outer product could overflow A (beyond
// ±linucb.MaxAbsContext) is a bad row: the run names its line and writes
// nothing, or with SkipBad skips it and folds the rest.
func TestHugeFeature(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	in := "event_id,a,b,product_id,response\ne1,1,2,ok,1\ne2,1e200,1,huge,1\n"
	_, err := bootstrap.RunReader(context.Background(), c, strings.NewReader(in), "s", bootstrap.Config{Model: "s"})
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "1e200") {
		t.Fatalf("error %v, want the bad row at line 3", err)
	}
	requireEmpty(t, c, "s")
	res, err := bootstrap.RunReader(context.Background(), c, strings.NewReader(in), "s", bootstrap.Config{Model: "s", SkipBad: true})
	if err != nil || res.Skipped != 1 || res.Events != 1 || res.Products != 1 {
		t.Fatalf("SkipBad: %+v, %v; want one event folded and one row skipped", res, err)
	}
}

// changingFile serves one content for the hashing pass and another after
// the seek back to the start, like a file rewritten during the run.
type changingFile struct {
	*bytes.Reader
	next []byte
}

func (f *changingFile) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart && f.next != nil {
		f.Reader = bytes.NewReader(f.next)
		f.next = nil
	}
	return f.Reader.Seek(off, whence)
}

func TestInputChanged(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	first := render(features4, genRows(70, 4, 5, 50, "a"))
	second := render(features4, genRows(71, 4, 5, 50, "a"))
	_, err := bootstrap.RunReader(context.Background(), c, &changingFile{Reader: bytes.NewReader(first), next: second}, "f", bootstrap.Config{Model: "chg"})
	if !errors.Is(err, bootstrap.ErrInputChanged) {
		t.Fatalf("error %v, want ErrInputChanged", err)
	}
	requireEmpty(t, c, "chg")
}

// TestEmptyLog: a header-only log creates the model with no arms and is
// recorded like any other.
func TestEmptyLog(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	in := "event_id,a,b,product_id,response\n"
	res, err := bootstrap.RunReader(ctx, c, strings.NewReader(in), "e", bootstrap.Config{Model: "empty"})
	if err != nil || res.Events != 0 || res.Products != 0 || res.AlreadyApplied {
		t.Fatalf("%+v, %v", res, err)
	}
	meta, err := store.ReadMeta(ctx, c, "empty")
	if err != nil || meta.Arms != 0 || meta.Events != 0 || !slices.Equal(meta.Features, []string{"a", "b"}) {
		t.Fatalf("meta %+v, %v", meta, err)
	}
	items, err := store.Recommend(ctx, c, "empty", store.Query{K: 3, Alpha: 1, Context: []float64{1, 1}})
	if err != nil || len(items) != 0 {
		t.Fatalf("recommend from an empty model: %v, %v", items, err)
	}
	res, err = bootstrap.RunReader(ctx, c, strings.NewReader(in), "e", bootstrap.Config{Model: "empty"})
	if err != nil || !res.AlreadyApplied {
		t.Fatalf("rerun: %+v, %v", res, err)
	}
}

func TestConfigErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	in := "event_id,a,product_id,response\ne1,1,p,1\n"
	for _, cfg := range []bootstrap.Config{{}, {Model: "m", Lambda: -1}, {Model: "m", Lambda: math.NaN()}, {Model: "m", Lambda: math.Inf(1)}} {
		if _, err := bootstrap.RunReader(ctx, c, strings.NewReader(in), "c", cfg); !errors.Is(err, bootstrap.ErrBadConfig) {
			t.Errorf("config %+v: error %v, want ErrBadConfig", cfg, err)
		}
	}
	if _, err := bootstrap.Run(ctx, c, filepath.Join(t.TempDir(), "missing.csv"), bootstrap.Config{Model: "m"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := bootstrap.RunReader(cancelled, c, strings.NewReader(in), "c", bootstrap.Config{Model: "m"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want context.Canceled", err)
	}
	requireEmpty(t, c, "m")
}

// TestFurtherLogKeepsGroups bootstraps a model with the reference spec (or
// one-hot groups by name), then a second log with neither: the second run
// folds on top (arms as the reference computes them for both logs, answers
// as its brute-force ranking) and the model keeps its spec and groups. A
// second log that gives other groups is refused with a message naming them
// and the fix, and changes nothing.
func TestFurtherLogKeepsGroups(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	sp := spec.Reference()
	features, groups := sp.Names(), sp.Groups()
	// oneHot returns random rows whose group columns have exactly one 1 (an
	// optional group none at times), as a model with groups requires.
	oneHot := func(seed uint64, n int, prefix string) []row {
		rows := genRows(seed, len(features), 12, n, prefix)
		rng := rand.New(rand.NewPCG(seed, 7))
		for _, r := range rows {
			for _, g := range groups {
				for _, i := range g.Features {
					r.x[i] = 0
				}
				if k := rng.IntN(len(g.Features) + 1); k < len(g.Features) {
					r.x[g.Features[k]] = 1
				} else if !g.Optional {
					r.x[g.Features[0]] = 1
				}
			}
		}
		return rows
	}
	byName := [][]string{{"gender_F", "gender_M"}, {"weekend", "weekday"}}
	for i, first := range []bootstrap.Config{{Spec: sp}, {OneHot: byName}} {
		model := fmt.Sprintf("keep%d", i)
		first.Model = model
		rows1, rows2 := oneHot(uint64(70+i), 400, "a"), oneHot(uint64(80+i), 300, "b")
		if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features, rows1)), "first", first); err != nil {
			t.Fatal(err)
		}
		want, err := store.ReadMeta(ctx, c, model)
		if err != nil || len(want.Groups) == 0 {
			t.Fatalf("%s: meta %+v, %v", model, want, err)
		}
		res, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features, rows2)), "second", bootstrap.Config{Model: model})
		if err != nil || res.Events != 300 {
			t.Fatalf("%s: the second log without spec or groups: %+v, %v", model, res, err)
		}
		got, err := store.ReadMeta(ctx, c, model)
		if err != nil || got.Spec != want.Spec || !reflect.DeepEqual(got.Groups, want.Groups) || got.Events != 700 {
			t.Fatalf("%s: after the second log %+v, want the spec and groups of %+v", model, got, want)
		}
		ref := reference(len(features), 1, rows1, rows2)
		checkModel(t, c, model, features, ref)
		checkRecommend(t, c, model, ref, uint64(i))

		// Other groups than the model's: refused, nothing changed.
		before := snapshot(t, c, model)
		_, err = bootstrap.RunReader(ctx, c, bytes.NewReader(render(features, oneHot(uint64(90+i), 50, "c"))), "third",
			bootstrap.Config{Model: model, OneHot: [][]string{{"morning", "afternoon", "evening"}}})
		if !errors.Is(err, store.ErrBadModel) || !strings.Contains(err.Error(), "the config gives 'morning,afternoon,evening'") ||
			!strings.Contains(err.Error(), "gender_F,gender_M") || !strings.Contains(err.Error(), "give no spec and no one-hot groups") {
			t.Fatalf("%s: other groups: %v", model, err)
		}
		if after := snapshot(t, c, model); !reflect.DeepEqual(after, before) {
			t.Fatalf("%s: the refused run changed the model", model)
		}
	}
}
