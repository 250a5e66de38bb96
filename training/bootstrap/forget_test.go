package bootstrap_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
)

// TestHalfLife creates a model with a half-life of 25 events, folds a
// second log without giving one (it forgets as the model does), and checks
// both against the offline reference that fades every product's evidence
// before each of its events; then a run with another half-life, and one
// giving a half-life to a model created without, fail and change nothing.
func TestHalfLife(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	const model, h = "hl", 25.0
	first, second := genRows(60, 4, 10, 800, "a"), genRows(61, 4, 10, 600, "b")
	if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, first)), "first", bootstrap.Config{Model: model, HalfLife: h}); err != nil {
		t.Fatal(err)
	}
	if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, second)), "second", bootstrap.Config{Model: model}); err != nil {
		t.Fatal(err)
	}
	checkModel(t, c, model, features4, referenceForgetting(4, 1, h, first, second))
	meta, err := store.ReadMeta(ctx, c, model)
	if err != nil || meta.HalfLife != h {
		t.Fatalf("half-life %v (%v), want %v", meta.HalfLife, err, h)
	}

	before := snapshot(t, c, model)
	_, err = bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, genRows(62, 4, 10, 50, "c"))), "third", bootstrap.Config{Model: model, HalfLife: 10})
	if !errors.Is(err, store.ErrBadModel) || !strings.Contains(err.Error(), "half-life 25, the config has 10") {
		t.Fatalf("another half-life: %v, want ErrBadModel naming both", err)
	}
	if after := snapshot(t, c, model); !reflect.DeepEqual(after, before) {
		t.Fatal("the refused run changed the model")
	}

	if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, first)), "plain", bootstrap.Config{Model: "plain"}); err != nil {
		t.Fatal(err)
	}
	_, err = bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, second)), "late", bootstrap.Config{Model: "plain", HalfLife: h})
	if !errors.Is(err, store.ErrBadModel) || !strings.Contains(err.Error(), "half-life 0, the config has 25") {
		t.Fatalf("a half-life for a model without: %v, want ErrBadModel", err)
	}
	if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(render(features4, first)), "neg", bootstrap.Config{Model: "neg", HalfLife: -1}); !errors.Is(err, bootstrap.ErrBadConfig) {
		t.Fatalf("negative half-life: %v, want ErrBadConfig", err)
	}
}
