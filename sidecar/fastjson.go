package sidecar

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
)

// The hot path of POST /v1/recommend avoids encoding/json's reflection for
// the request body of the common form (a dense context array and the
// scalar options) and for the reply.
// Anything unusual falls back to encoding/json, so errors and escaping stay
// exactly encoding/json's.

// denseContext parses raw, a JSON array of finite numbers, without
// reflection. ok is false if raw is anything else (the caller then uses
// encoding/json, which also words the error).
func denseContext(raw []byte) (x []float64, ok bool) {
	n := len(raw)
	if n < 2 || raw[0] != '[' || raw[n-1] != ']' {
		return nil, false
	}
	x = make([]float64, 0, 16)
	i := 1
	skip := func() {
		for i < n-1 && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
			i++
		}
	}
	skip()
	if i == n-1 {
		return x, true // []
	}
	for {
		skip()
		start := i
		for i < n-1 && isNumberByte(raw[i]) {
			i++
		}
		if !jsonNumber(raw[start:i]) {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(raw[start:i]), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, false
		}
		x = append(x, f)
		skip()
		if i == n-1 {
			return x, true
		}
		if raw[i] != ',' {
			return nil, false
		}
		i++
	}
}

// fastRecommend parses the common recommendation body — an object with
// "context", a dense array of finite numbers, and optionally "model" and
// "event_id" (strings without escapes), "k" (an integer) and "alpha" (a number), each
// at most once, in any order — into req without reflection, the context
// already parsed into req.dense. It returns false for anything else, valid
// or not: the caller then decodes the body with encoding/json, which gives
// the same request or words the error.
func fastRecommend(b []byte, req *recommendRequest) bool {
	i, n := 0, len(b)
	ws := func() {
		for i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	// str reads a string of printable ASCII without escapes; number reads
	// a JSON number. Both return its bytes.
	str := func() ([]byte, bool) {
		if i >= n || b[i] != '"' {
			return nil, false
		}
		start := i + 1
		for i = start; i < n && b[i] != '"'; i++ {
			if b[i] == '\\' || b[i] < 0x20 || b[i] >= 0x80 { // escapes, control bytes, non-ASCII: encoding/json's business
				return nil, false
			}
		}
		if i >= n {
			return nil, false
		}
		i++
		return b[start : i-1], true
	}
	number := func() ([]byte, bool) {
		start := i
		for i < n && isNumberByte(b[i]) {
			i++
		}
		return b[start:i], jsonNumber(b[start:i])
	}
	var seen struct{ context, model, eventID, k, alpha bool }
	ws()
	if i >= n || b[i] != '{' {
		return false
	}
	i++
	for {
		ws()
		key, ok := str()
		if !ok {
			return false
		}
		ws()
		if i >= n || b[i] != ':' {
			return false
		}
		i++
		ws()
		switch string(key) {
		case "context":
			end := bytes.IndexByte(b[i:], ']')
			if seen.context || end < 0 {
				return false
			}
			x, ok := denseContext(b[i : i+end+1])
			if !ok {
				return false
			}
			req.Context, req.dense, seen.context = b[i:i+end+1], x, true
			i += end + 1
		case "model":
			v, ok := str()
			if seen.model || !ok {
				return false
			}
			req.Model, seen.model = string(v), true
		case "event_id":
			v, ok := str()
			if seen.eventID || !ok {
				return false
			}
			req.EventID, seen.eventID = string(v), true
		case "k":
			v, ok := number()
			if seen.k || !ok || bytes.ContainsAny(v, ".eE") {
				return false
			}
			k, err := strconv.Atoi(string(v))
			if err != nil {
				return false
			}
			req.K, seen.k = &k, true
		case "alpha":
			v, ok := number()
			if seen.alpha || !ok {
				return false
			}
			a, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return false
			}
			req.Alpha, seen.alpha = &a, true
		default:
			return false
		}
		ws()
		if i < n && b[i] == ',' {
			i++
			continue
		}
		if i < n && b[i] == '}' {
			i++
			break
		}
		return false
	}
	ws()
	return i == n && seen.context
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// jsonNumber reports whether b follows JSON's number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		s := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - s
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(b)
}

// appendRecommendResponse appends r as JSON, as encoding/json would write
// it (without HTML escaping), and a newline.
func appendRecommendResponse(b []byte, r RecommendResponse) []byte {
	b = append(b, `{"model":`...)
	b = appendString(b, r.Model)
	b = append(b, `,"items":[`...)
	for i, it := range r.Items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendString(b, it.ID)
		b = append(b, `,"score":`...)
		b = appendFloat(b, it.Score)
		b = append(b, '}')
	}
	b = append(b, `],"event_id":`...)
	b = appendString(b, r.EventID)
	return append(b, "}\n"...)
}

// appendString appends s as a JSON string: plain printable ASCII directly,
// anything else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat formats f as encoding/json does (shortest representation,
// exponent form outside [1e-6, 1e21)). f is finite: scores come from Redis
// as finite decimal strings.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		n := len(b)
		b = strconv.AppendFloat(b, f, 'e', -1, 64)
		// e-09 → e-9, as encoding/json writes it.
		if m := len(b); m-n >= 4 && b[m-4] == 'e' && b[m-3] == '-' && b[m-2] == '0' {
			b[m-2] = b[m-1]
			b = b[:m-1]
		}
		return b
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}
