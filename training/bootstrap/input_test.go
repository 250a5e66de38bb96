package bootstrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/csvlog"
)

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
