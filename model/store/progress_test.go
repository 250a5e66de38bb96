package store_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
)

// TestProgressRecords checks the trainers' records in the root against
// docs/FORMAT.md: the fields WriteFlushRecord and offset writes store, by
// name and text, and ReadSummary and ReadOffsets reading them back.
func TestProgressRecords(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	if _, err := store.ReadSummary(ctx, c, "m", "t", nil); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("no model: %v, want ErrNoModel", err)
	}
	arm, p := solved(t, 2, 7, 9)
	w := store.Write{Model: "m", Features: featureNames(2), Lambda: 1, Events: 40, Rewards: 12.5, Invalid: 3,
		Arms: []store.ArmWrite{{ID: "a", Arm: arm, Params: p}},
		Set: []store.Field{{Name: store.OffsetField("t", 0), Value: store.FormatOffset(17)}, {Name: store.OffsetField("t", 2), Value: store.FormatOffset(5)},
			{Name: store.OffsetField("u", 1), Value: store.FormatOffset(9)}}}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteFlushRecord(ctx, c, "m", store.FlushRecord{AtMS: 1764000000000, MS: 12.3456, Arms: 7, Events: 123}); err != nil {
		t.Fatal(err)
	}
	root, err := c.Do(ctx, c.B().Hgetall().Key("rb:{m}").Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"off:t:0": "17", "off:t:2": "5", "off:u:1": "9", "flush:at_ms": "1764000000000",
		"flush:ms": "12.346", "flush:arms": "7", "flush:events": "123", "events": "40", "invalid": "3", "rewards": "12.5", "arms": "1"} {
		if root[f] != v {
			t.Errorf("root field %s is %q, want %q", f, root[f], v)
		}
	}
	if err := c.Do(ctx, c.B().Hset().Key("rb:{m}").FieldValue().FieldValue("off:t:3", "x").Build()).Error(); err != nil {
		t.Fatal(err)
	}

	s, err := store.ReadSummary(ctx, c, "m", "t", []int32{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if s.Arms != 1 || s.Events != 40 || s.Rewards != 12.5 || s.Invalid != 3 || s.FlushAtMS != 1764000000000 ||
		s.FlushMS == nil || *s.FlushMS != 12.346 || s.FlushArms == nil || *s.FlushArms != 7 || s.FlushEvents == nil || *s.FlushEvents != 123 {
		t.Errorf("summary %+v", s)
	}
	if len(s.Offsets) != 2 || s.Offsets[0] != 17 || s.Offsets[2] != 5 {
		t.Errorf("offsets %v, want 0:17 2:5 (1 absent, 3 not a number)", s.Offsets)
	}

	// A model no trainer has flushed: no flush record, no offsets.
	w2 := store.Write{Model: "n", Features: featureNames(2), Lambda: 1}
	if _, err := w2.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	if s, err := store.ReadSummary(ctx, c, "n", "t", nil); err != nil || s.FlushAtMS != 0 || s.FlushMS != nil || s.FlushArms != nil || s.FlushEvents != nil || s.Offsets != nil {
		t.Errorf("unflushed model: %+v, %v", s, err)
	}

	offs, err := store.ReadOffsets(ctx, c, "m", "t", []int32{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(offs) != 3 || offs[0] != "17" || offs[2] != "5" || offs[3] != "x" {
		t.Errorf("stored offsets %v, want 0:17 2:5 3:x", offs)
	}
	for _, bad := range []string{"x", "-1", "", "1.5"} {
		if _, err := store.ParseOffset(bad); !errors.Is(err, store.ErrBadModel) {
			t.Errorf("offset %q: %v, want ErrBadModel", bad, err)
		}
	}
	if v, err := store.ParseOffset(store.FormatOffset(1 << 40)); err != nil || v != 1<<40 {
		t.Errorf("round trip: %d, %v", v, err)
	}
	if got := store.OffsetField("feedback-events", 11); got != "off:feedback-events:"+strconv.Itoa(11) {
		t.Errorf("offset field %q", got)
	}
}

// TestCheckLoaded: the readiness check fails until the script (or, with
// fcall, the function) is loaded, then passes.
func TestCheckLoaded(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	for _, fcall := range []bool{false, true} {
		if err := store.CheckLoaded(ctx, c, fcall); err == nil {
			t.Errorf("fcall %v: ready before loading", fcall)
		}
	}
	if err := store.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, fcall := range []bool{false, true} {
		if err := store.CheckLoaded(ctx, c, fcall); err != nil {
			t.Errorf("fcall %v: not ready after loading: %v", fcall, err)
		}
	}
}
