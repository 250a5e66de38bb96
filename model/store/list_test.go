package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
)

// TestListModels: the roots of two models are listed, not their arm keys,
// nor other rb:* keys or non-hash keys.
func TestListModels(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	for _, k := range []string{store.RootKey("a"), store.RootKey("b:c"), store.ArmKey("a", "p}"), store.ArmKey("b:c", "x"), "rb:other", "other"} {
		if err := c.Do(ctx, c.B().Hset().Key(k).FieldValue().FieldValue("format", "3").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Do(ctx, c.B().Set().Key(store.RootKey("str")).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	got, err := store.ListModels(ctx, c)
	if err != nil || !slices.Equal(got, []string{"a", "b:c"}) {
		t.Fatalf("ListModels: %q %v, want [a b:c]", got, err)
	}
}
