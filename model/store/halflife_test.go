package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
)

// TestMetaHalfLife: ReadMeta gives 0 without the halflife field, its value
// with it, and ErrBadModel for a value that is not a positive number.
func TestMetaHalfLife(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	writeRandomModel(t, c, "hl", 3, 4, 1)
	meta, err := store.ReadMeta(ctx, c, "hl")
	if err != nil || meta.HalfLife != 0 {
		t.Fatalf("without the field: half-life %v, %v", meta.HalfLife, err)
	}
	set := func(v string) {
		if err := c.Do(ctx, c.B().Hset().Key(store.RootKey("hl")).FieldValue().FieldValue(store.HalfLifeField, v).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	set("250.5")
	if meta, err = store.ReadMeta(ctx, c, "hl"); err != nil || meta.HalfLife != 250.5 {
		t.Fatalf("half-life %v, %v, want 250.5", meta.HalfLife, err)
	}
	for _, bad := range []string{"0", "-3", "inf", "NaN", "ten", ""} {
		set(bad)
		if _, err := store.ReadMeta(ctx, c, "hl"); !errors.Is(err, store.ErrBadModel) {
			t.Errorf("half-life %q: %v, want ErrBadModel", bad, err)
		}
	}
}
