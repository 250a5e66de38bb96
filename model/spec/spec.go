// Package spec is the feature spec of a model: a small declarative list of
// encoders that turn a visitor's raw attributes (age, gender, a timestamp,
// …) into the context vector x the bandit scores. The spec is stored with the
// model in Redis (root field "spec"), so the sidecar, the trainer's tools and
// the simulator all encode the same way: there is no training/serving skew
// when both go through the spec.
//
// Encoders, in the order their features appear in x:
//
//	numeric      one feature named after the attribute (or Name):
//	             (v − min)/(max − min), clamped to [0, 1]
//	onehot       one feature per value, named <attribute>_<value> (or
//	             <Name>_<value>): 1 for the attribute's value, 0 for the others;
//	             an unknown value is an error. Declares a one-hot group.
//	time_of_day  one feature per bin, named after the bin: 1 if the local hour
//	             of the timestamp is in [from, to), else 0. Hours in no bin
//	             give all zeros: an optional one-hot group (a plain one if the
//	             bins cover the day; none if bins overlap).
//	weekend      two features, weekend and weekday: Saturday and Sunday in
//	             local time are the weekend. Declares a one-hot group.
//
// Timestamps are RFC 3339 strings (their own offset gives the local time) or
// Unix milliseconds (local time in the spec's Timezone, UTC by default).
// Numeric attributes are JSON numbers.
package spec

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	_ "time/tzdata" // IANA time zones without relying on the host's tzdata

	"github.com/redbandit/redbandit/model"
)

// ErrBadSpec reports an invalid spec.
var ErrBadSpec = errors.New("spec: invalid spec")

// ErrBadAttributes reports attributes the spec cannot encode: a missing or
// unknown attribute, a value of the wrong type or an unknown category.
var ErrBadAttributes = errors.New("spec: bad attributes")

// Encoder kinds.
const (
	Numeric   = "numeric"
	OneHot    = "onehot"
	TimeOfDay = "time_of_day"
	Weekend   = "weekend"
)

// Bin is an hour range [From, To) of a time_of_day encoder.
type Bin struct {
	Name string  `json:"name"`
	From float64 `json:"from"`
	To   float64 `json:"to"`
}

// Encoder turns one attribute into one or more features.
type Encoder struct {
	Kind      string   `json:"kind"`
	Attribute string   `json:"attribute"`
	Name      string   `json:"name,omitempty"`   // feature name (numeric) or prefix (onehot); default: the attribute
	Min       float64  `json:"min,omitempty"`    // numeric
	Max       float64  `json:"max,omitempty"`    // numeric
	Values    []string `json:"values,omitempty"` // onehot
	Bins      []Bin    `json:"bins,omitempty"`   // time_of_day
}

// Spec is a model's feature spec.
type Spec struct {
	// Timezone is the IANA zone of Unix-millisecond timestamps; default UTC.
	Timezone string    `json:"timezone,omitempty"`
	Encoders []Encoder `json:"encoders"`

	loc *time.Location
}

//go:embed reference.json
var referenceJSON []byte

// Reference returns the spec of the reference food shop: age, latitude and
// longitude scaled; gender F/M; traffic source Display/Email/Facebook/
// Organic/Search; morning 6–12, afternoon 12–18, evening 18–24; weekend,
// weekday — 15 features.
func Reference() *Spec {
	s, err := Parse(referenceJSON)
	if err != nil {
		panic(err) // the embedded file is tested
	}
	return s
}

// Parse decodes and validates a spec.
func Parse(data []byte) (*Spec, error) {
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSpec, err)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// JSON returns the spec's canonical JSON, as stored with the model.
func (s *Spec) JSON() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain data
	}
	return string(b)
}

func (s *Spec) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSpec, fmt.Sprintf(format, args...))
	}
	s.loc = time.UTC
	if s.Timezone != "" {
		loc, err := time.LoadLocation(s.Timezone)
		if err != nil {
			return bad("timezone %q: %v", s.Timezone, err)
		}
		s.loc = loc
	}
	if len(s.Encoders) == 0 {
		return bad("no encoders")
	}
	seen := map[string]bool{}
	for i, e := range s.Encoders {
		if e.Attribute == "" {
			return bad("encoder %d has no attribute", i+1)
		}
		switch e.Kind {
		case Numeric:
			if !(e.Max > e.Min) || math.IsInf(e.Max-e.Min, 0) {
				return bad("numeric %s needs min < max, got %v and %v", e.Attribute, e.Min, e.Max)
			}
		case OneHot:
			if len(e.Values) == 0 {
				return bad("onehot %s has no values", e.Attribute)
			}
		case TimeOfDay:
			if len(e.Bins) == 0 {
				return bad("time_of_day %s has no bins", e.Attribute)
			}
			for _, b := range e.Bins {
				if b.Name == "" || b.From < 0 || b.To > 24 || !(b.From < b.To) {
					return bad("time_of_day %s: bin %q must have a name and 0 <= from < to <= 24", e.Attribute, b.Name)
				}
			}
		case Weekend:
		default:
			return bad("encoder %d has unknown kind %q", i+1, e.Kind)
		}
	}
	for _, name := range s.Names() {
		if name == "" || seen[name] {
			return bad("feature name %q is empty or repeated", name)
		}
		seen[name] = true
	}
	if d := len(seen); d > 64 {
		return bad("%d features, more than 64", d)
	}
	return nil
}

// Names returns the encoded feature names, in context order.
func (s *Spec) Names() []string {
	var out []string
	for _, e := range s.Encoders {
		prefix := e.Attribute
		if e.Name != "" {
			prefix = e.Name
		}
		switch e.Kind {
		case Numeric:
			out = append(out, prefix)
		case OneHot:
			for _, v := range e.Values {
				out = append(out, prefix+"_"+v)
			}
		case TimeOfDay:
			for _, b := range e.Bins {
				out = append(out, b.Name)
			}
		case Weekend:
			out = append(out, "weekend", "weekday")
		}
	}
	return out
}

// Dim returns the number of encoded features.
func (s *Spec) Dim() int { return len(s.Names()) }

// Groups returns the one-hot groups the spec guarantees, for the model's
// fast scoring path: every onehot and weekend encoder (exactly one feature
// set), and every time_of_day encoder (at most one, unless its bins cover
// the whole day without overlap: then exactly one).
func (s *Spec) Groups() []model.Group {
	var groups []model.Group
	at := 0
	for _, e := range s.Encoders {
		n := e.width()
		if e.Kind != Numeric && (e.Kind != TimeOfDay || !e.overlaps()) {
			g := model.Group{Features: make([]int, n), Optional: e.Kind == TimeOfDay && !e.coversDay()}
			for i := range g.Features {
				g.Features[i] = at + i
			}
			groups = append(groups, g)
		}
		at += n
	}
	return groups
}

func (e *Encoder) width() int {
	switch e.Kind {
	case OneHot:
		return len(e.Values)
	case TimeOfDay:
		return len(e.Bins)
	case Weekend:
		return 2
	}
	return 1
}

// binsAt counts the bins holding hour h.
func (e *Encoder) binsAt(h float64) int {
	n := 0
	for _, b := range e.Bins {
		if h >= b.From && h < b.To {
			n++
		}
	}
	return n
}

// hourEdges are the hours at which some bin starts or ends, plus 0: between
// two consecutive edges the set of bins holding an hour does not change.
func (e *Encoder) hourEdges() []float64 {
	edges := []float64{0}
	for _, b := range e.Bins {
		edges = append(edges, b.From, b.To)
	}
	return edges
}

func (e *Encoder) coversDay() bool {
	for _, h := range e.hourEdges() {
		if h < 24 && e.binsAt(h) != 1 {
			return false
		}
	}
	return true
}

func (e *Encoder) overlaps() bool {
	for _, h := range e.hourEdges() {
		if h < 24 && e.binsAt(h) > 1 {
			return true
		}
	}
	return false
}

// Encode turns raw attributes into the context vector. Every attribute the
// spec names must be present; attributes it does not name are an error too
// (they are most likely a typo). Numbers may be JSON numbers or numeric
// strings; timestamps RFC 3339 strings or Unix milliseconds.
func (s *Spec) Encode(attrs map[string]any) ([]float64, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadAttributes, fmt.Sprintf(format, args...))
	}
	used := map[string]bool{}
	x := make([]float64, 0, s.Dim())
	for _, e := range s.Encoders {
		v, ok := attrs[e.Attribute]
		if !ok || v == nil {
			return nil, bad("missing attribute %q", e.Attribute)
		}
		used[e.Attribute] = true
		switch e.Kind {
		case Numeric:
			f, err := number(v)
			if err != nil {
				return nil, bad("attribute %q: %v", e.Attribute, err)
			}
			x = append(x, math.Min(1, math.Max(0, (f-e.Min)/(e.Max-e.Min))))
		case OneHot:
			str, ok := v.(string)
			if !ok {
				return nil, bad("attribute %q must be a string, one of %s", e.Attribute, strings.Join(e.Values, ", "))
			}
			hit := false
			for _, val := range e.Values {
				if val == str {
					x = append(x, 1)
					hit = true
				} else {
					x = append(x, 0)
				}
			}
			if !hit {
				return nil, bad("attribute %q has unknown value %q (known: %s)", e.Attribute, str, strings.Join(e.Values, ", "))
			}
		case TimeOfDay, Weekend:
			t, err := s.timestamp(v)
			if err != nil {
				return nil, bad("attribute %q: %v", e.Attribute, err)
			}
			if e.Kind == Weekend {
				wd := t.Weekday()
				if wd == time.Saturday || wd == time.Sunday {
					x = append(x, 1, 0)
				} else {
					x = append(x, 0, 1)
				}
				continue
			}
			h := float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
			for _, b := range e.Bins {
				if h >= b.From && h < b.To {
					x = append(x, 1)
				} else {
					x = append(x, 0)
				}
			}
		}
	}
	for name := range attrs {
		if !used[name] {
			return nil, bad("unknown attribute %q", name)
		}
	}
	return x, nil
}

func number(v any) (float64, error) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return 0, fmt.Errorf("%q is not a number", n)
		}
	default:
		return 0, fmt.Errorf("%v is not a number", v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%v is not finite", f)
	}
	return f, nil
}

func (s *Spec) timestamp(v any) (time.Time, error) {
	if str, ok := v.(string); ok {
		t, err := time.Parse(time.RFC3339, str)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 timestamp", str)
		}
		return t, nil
	}
	ms, err := number(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("a timestamp must be an RFC 3339 string or Unix milliseconds: %v", err)
	}
	loc := s.loc
	if loc == nil {
		loc = time.UTC
	}
	return time.UnixMilli(int64(ms)).In(loc), nil
}
