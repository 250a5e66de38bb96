package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/tools/scenario"
)

// TestBootstrapHalfLife: datagen --scenario new-products writes a log
// without the coffees, and bootstrap --half-life creates a model that
// forgets with that half-life and has no coffee arm.
func TestBootstrapHalfLife(t *testing.T) {
	dir := t.TempDir()
	if out, err := run(t, "datagen", "--out", dir, "--scenario", scenario.NewProducts); err != nil || !strings.Contains(out, "10000 events") {
		t.Fatalf("datagen: %v\n%s", err, out)
	}
	if _, err := run(t, "datagen", "--out", t.TempDir(), "--scenario", "winter"); err == nil {
		t.Fatal("datagen accepted an unknown scenario")
	}
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	out, err := run(t, "--redis", srv.URL(), "--model", "hl", "bootstrap", "--spec", "reference", "--half-life", "100", filepath.Join(dir, scenario.LogFile))
	if err != nil || !strings.Contains(out, "folded 10000 events") {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	ctx := context.Background()
	meta, err := store.ReadMeta(ctx, srv.Client(), "hl")
	if err != nil || meta.HalfLife != 100 {
		t.Fatalf("half-life %v (%v), want 100", meta.HalfLife, err)
	}
	ids, err := store.ReadProducts(ctx, srv.Client(), "hl", meta.Arms)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range scenario.Launched(scenario.NewProducts, scenario.Catalogue(1)) {
		if slices.Contains(ids, p.ID) {
			t.Errorf("coffee %s has an arm", p.ID)
		}
	}
	if len(ids) != len(scenario.Catalogue(1))-6 {
		t.Errorf("%d arms, want %d", len(ids), len(scenario.Catalogue(1))-6)
	}
}
