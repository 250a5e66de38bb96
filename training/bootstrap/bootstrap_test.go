package bootstrap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/csvlog"
)

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
