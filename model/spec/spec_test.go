package spec_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/model/spec"
)

func TestReferenceSpec(t *testing.T) {
	s := spec.Reference()
	want := []string{"age", "latitude", "longitude", "gender_F", "gender_M",
		"traffic_source_Display", "traffic_source_Email", "traffic_source_Facebook", "traffic_source_Organic", "traffic_source_Search",
		"morning", "afternoon", "evening", "weekend", "weekday"}
	if got := s.Names(); !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if got := fmt.Sprint(s.Groups()); got != "[{[3 4] false} {[5 6 7 8 9] false} {[10 11 12] true} {[13 14] false}]" {
		t.Fatalf("groups %s", got)
	}
	again, err := spec.Parse([]byte(s.JSON()))
	if err != nil || again.JSON() != s.JSON() {
		t.Fatalf("JSON round trip: %v", err)
	}
}

// TestEncode checks hand-encoded vectors: scaling with clamping, one-hot
// categories, time-of-day bins and the weekend in the timestamp's own
// offset, or in the spec's zone for Unix milliseconds.
func TestEncode(t *testing.T) {
	s := spec.Reference()
	cases := []struct {
		attrs map[string]any
		want  []float64
	}{
		{
			// Saturday 08:15 in Melbourne (+11:00): morning, weekend.
			map[string]any{"age": 34.0, "latitude": -37.8, "longitude": 145.0, "gender": "F", "traffic_source": "Search", "timestamp": "2026-01-03T08:15:00+11:00"},
			[]float64{(34.0 - 16) / 54, (-37.8 + 38.1) / 0.6, (145.0 - 144.6) / 0.8, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0},
		},
		{
			// The same instant written in UTC is Friday 21:15: evening, weekday.
			map[string]any{"age": 90.0, "latitude": -50.0, "longitude": 150.0, "gender": "M", "traffic_source": "Display", "timestamp": "2026-01-02T21:15:00Z"},
			[]float64{1, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1},
		},
		{
			// Unix ms 1767388500000 = 2026-01-02T21:15:00Z = Saturday 08:15 in
			// Melbourne (the spec's zone); 03:00 local is in no bin.
			map[string]any{"age": 16.0, "latitude": -38.1, "longitude": 144.6, "gender": "F", "traffic_source": "Email", "timestamp": 1767388500000.0},
			[]float64{0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0},
		},
		{
			map[string]any{"age": 16.0, "latitude": -38.1, "longitude": 144.6, "gender": "F", "traffic_source": "Email", "timestamp": "2026-01-05T03:00:00+11:00"},
			[]float64{0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1},
		},
	}
	for i, c := range cases {
		got, err := s.Encode(c.attrs)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("case %d: %d values, want %d", i, len(got), len(c.want))
		}
		for j := range got {
			if d := got[j] - c.want[j]; d > 1e-12 || d < -1e-12 {
				t.Fatalf("case %d: x[%d] (%s) = %v, want %v\n got %v\nwant %v", i, j, s.Names()[j], got[j], c.want[j], got, c.want)
			}
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	s := spec.Reference()
	ok := map[string]any{"age": 34.0, "latitude": -37.8, "longitude": 145.0, "gender": "F", "traffic_source": "Search", "timestamp": "2026-01-03T08:15:00+11:00"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for name, attrs := range map[string]map[string]any{
		"missing age":       with("age", nil),
		"age not a number":  with("age", "old"),
		"unknown gender":    with("gender", "X"),
		"gender not string": with("gender", 1.0),
		"bad timestamp":     with("timestamp", "yesterday"),
		"timestamp bool":    with("timestamp", true),
		"unknown attribute": with("agee", 3.0),
		"NaN is not finite": with("age", nan()),
	} {
		if _, err := s.Encode(attrs); !errors.Is(err, spec.ErrBadAttributes) {
			t.Errorf("%s: %v, want ErrBadAttributes", name, err)
		} else if !strings.Contains(err.Error(), "attribute") {
			t.Errorf("%s: unclear error %v", name, err)
		}
	}
}

func nan() float64 { var z float64; return z / z }

func TestParseErrors(t *testing.T) {
	for name, js := range map[string]string{
		"no encoders":      `{"encoders": []}`,
		"unknown kind":     `{"encoders": [{"kind": "log", "attribute": "a"}]}`,
		"min >= max":       `{"encoders": [{"kind": "numeric", "attribute": "a", "min": 1, "max": 1}]}`,
		"no values":        `{"encoders": [{"kind": "onehot", "attribute": "a"}]}`,
		"bad bin":          `{"encoders": [{"kind": "time_of_day", "attribute": "t", "bins": [{"name": "x", "from": 5, "to": 3}]}]}`,
		"duplicate name":   `{"encoders": [{"kind": "numeric", "attribute": "a", "min": 0, "max": 1}, {"kind": "numeric", "attribute": "a", "min": 0, "max": 1}]}`,
		"unknown field":    `{"encoders": [{"kind": "numeric", "attribute": "a", "min": 0, "max": 1, "scale": 2}]}`,
		"unknown timezone": `{"timezone": "Mars/Base", "encoders": [{"kind": "weekend", "attribute": "t"}]}`,
		"not json":         `{`,
	} {
		if _, err := spec.Parse([]byte(js)); !errors.Is(err, spec.ErrBadSpec) {
			t.Errorf("%s: %v, want ErrBadSpec", name, err)
		}
	}
	// Bins covering the day make a plain group; overlapping bins none.
	full, err := spec.Parse([]byte(`{"encoders": [{"kind": "time_of_day", "attribute": "t", "bins": [{"name": "am", "from": 0, "to": 12}, {"name": "pm", "from": 12, "to": 24}]}]}`))
	if err != nil || fmt.Sprint(full.Groups()) != "[{[0 1] false}]" {
		t.Fatalf("full-day bins: %v %v", full.Groups(), err)
	}
	over, err := spec.Parse([]byte(`{"encoders": [{"kind": "time_of_day", "attribute": "t", "bins": [{"name": "am", "from": 0, "to": 13}, {"name": "pm", "from": 12, "to": 24}]}]}`))
	if err != nil || len(over.Groups()) != 0 {
		t.Fatalf("overlapping bins: %v %v", over.Groups(), err)
	}
}
