package sidecar

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDenseContext: wherever the fast parser accepts an input, encoding/json
// reads the same numbers; it accepts every well-formed array of finite
// numbers; anything it refuses goes to encoding/json.
func TestDenseContext(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	inputs := []string{"[]", "[ ]", "[1]", " [1,2] ", "[1 , 2 ,3]", "[-0, 0.5, 1e3, -1.25E-7, 2e+2]", "[\n1,\t2\r]",
		"[1,]", "[,1]", "[01]", "[+1]", "[1.]", "[.5]", "[1e]", "[--1]", "[1 2]", "[1e999]", "[NaN]", "[Infinity]",
		"[0x10]", "[1_0]", "[\"1\"]", "[[1]]", "[1,2", "1,2]", "{}", "[true]", "[null]", ""}
	for i := 0; i < 500; i++ {
		var b bytes.Buffer
		b.WriteByte('[')
		for j := 0; j < rng.IntN(20); j++ {
			if j > 0 {
				b.WriteString([]string{",", ", ", " ,"}[rng.IntN(3)])
			}
			v := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10))
			b.WriteString(strconv.FormatFloat(v, []byte("gefE")[rng.IntN(4)], -1, 64))
		}
		b.WriteByte(']')
		inputs = append(inputs, b.String())
	}
	for _, in := range inputs {
		got, ok := denseContext([]byte(in))
		var want []float64
		err := json.Unmarshal([]byte(in), &want)
		finite := !slices.ContainsFunc(want, func(f float64) bool { return math.IsInf(f, 0) })
		switch {
		case ok && (err != nil || !slices.Equal(got, want)):
			t.Errorf("%q: fast %v, encoding/json %v (%v)", in, got, want, err)
		case !ok && err == nil && finite && len(in) > 0 && in[0] == '[' && !strings.Contains(in, "null"): // null is 0 to encoding/json, an error to the handler
			t.Errorf("%q: refused, but encoding/json reads %v", in, want)
		}
	}
}

// TestAppendRecommendResponse: the hand-written encoder writes the bytes
// encoding/json writes.
func TestAppendRecommendResponse(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	ids := []string{"42", "p-7", "dish <1> & \"2\"", "é", "tab\there", "", "a\\b"}
	for i := 0; i < 300; i++ {
		r := RecommendResponse{Model: ids[rng.IntN(len(ids))], EventID: fmt.Sprintf("%032x", rng.Uint64())}
		for j := 0; j < rng.IntN(6); j++ {
			s := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(50)-25))
			if rng.IntN(10) == 0 {
				s = 0
			}
			r.Items = append(r.Items, Item{ID: ids[rng.IntN(len(ids))], Score: s})
		}
		if i%2 == 0 && len(r.Items) == 0 {
			r.Items = []Item{}
		}
		var want bytes.Buffer
		_ = json.NewEncoder(&want).Encode(r)
		if r.Items == nil { // the handler always sends a non-nil slice
			want.Reset()
			r.Items = []Item{}
			_ = json.NewEncoder(&want).Encode(r)
		}
		if got := appendRecommendResponse(nil, r); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("got  %s\nwant %s", got, want.Bytes())
		}
	}
}

// sameAsDecoder requires fastRecommend, where it accepts body, to give the
// request encoding/json gives (and the context encoding/json reads), and
// reports whether it accepted.
func sameAsDecoder(t *testing.T, body string) bool {
	t.Helper()
	var fast recommendRequest
	if !fastRecommend([]byte(body), &fast) {
		return false
	}
	var slow recommendRequest
	if err := decodeJSON(strings.NewReader(body), &slow); err != nil {
		t.Fatalf("%q: fast path accepted, encoding/json: %v", body, err)
	}
	var x []float64
	if err := json.Unmarshal(slow.Context, &x); err != nil || !slices.Equal(x, fast.dense) ||
		!bytes.Equal(bytes.TrimSpace(slow.Context), fast.Context) || fast.Model != slow.Model ||
		(fast.K != nil) != (slow.K != nil) || fast.K != nil && *fast.K != *slow.K || (fast.Alpha != nil) != (slow.Alpha != nil) || fast.Alpha != nil && *fast.Alpha != *slow.Alpha ||
		slow.Candidates != nil || slow.Exclude != nil || slow.Attributes != nil {
		t.Fatalf("%q: fast %+v, encoding/json %+v (context %v, %v)", body, fast, slow, x, err)
	}
	return true
}

// TestFastRecommend: the fast path takes the common bodies and gives what
// encoding/json gives; everything else (escapes, other fields, repeated
// keys, nulls, non-integer k, malformed JSON) goes to encoding/json.
func TestFastRecommend(t *testing.T) {
	accepted := []string{
		`{"context": [0.5, 1, 0]}`,
		` { "model" : "shop" , "context":[1,2,3], "k": 5, "alpha": 0.25 } `,
		`{"alpha":1e-3,"k":-2,"context":[],"model":""}`,
		"{\n\t\"context\": [1e3, -0.5],\r\n\t\"k\": 0\n}",
		`{"event_id": "e-1", "context": [1], "model": "m"}`,
	}
	refused := []string{
		``, `{}`, `[]`, `{"context": [1, 2]`, `{"context": [1, 2]} x`, `{"context": [1, 2]}{}`,
		`{"context": [1, 2], "context": [3]}`, `{"k": 5, "k": 6, "context": [1]}`, `{"Context": [1]}`,
		`{"context": {"age": 1}}`, `{"context": [1, "2"]}`, `{"context": [[1]]}`, `{"context": [1,]}`,
		`{"context": [1], "model": "sh\u006fp"}`, `{"context": [1], "model": "é"}`, `{"context": [1], "model": null}`,
		`{"context": [1], "k": 5.0}`, `{"context": [1], "k": 5e0}`, `{"context": [1], "k": 99999999999999999999}`,
		`{"context": [1], "alpha": 1e999}`, `{"context": [1], "alpha": .5}`, `{"context": [1], "candidates": ["a"]}`,
		`{"context": [1], "exclude": []}`, `{"attributes": {"age": 3}}`, `{"context": [1], "other": 1}`,
		`{"context": [1], "event_id": "a", "event_id": "b"}`, `{"context": [1], "event_id": "\u00e9"}`, `{"context": [1], "event_id": 7}`,
		`{"context": [1],}`, `{"context" [1]}`, `{context: [1]}`, `{"context": [1e999]}`,
	}
	for _, b := range accepted {
		if !sameAsDecoder(t, b) {
			t.Errorf("%q: refused", b)
		}
	}
	for _, b := range refused {
		if sameAsDecoder(t, b) {
			t.Errorf("%q: accepted", b)
		}
	}
}

// FuzzFastRecommend: whatever the fast path accepts, encoding/json reads
// the same way.
func FuzzFastRecommend(f *testing.F) {
	for _, b := range []string{`{"context": [0.5, 1, 0]}`, `{"model":"m","context":[1,2],"k":3,"alpha":0.1}`,
		`{"context": [1], "k": 5.0}`, `{"context":[-0,1e5],"alpha":2E-3}`} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) { sameAsDecoder(t, body) })
}
