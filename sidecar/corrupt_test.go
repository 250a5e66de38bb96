package sidecar_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
)

// TestCorruptModelHTTP damages one field at a time of a model's metadata
// (every root field without a colon, the spec included) and of one
// product's arm hash, then calls every endpoint that reads the model through
// a fresh sidecar (no cached model information): each answer must be JSON,
// a 4xx or 5xx one with an error message — never a panic, a dropped
// connection or an empty body. model/store/corrupt_test.go does the same for the
// scripts themselves.
func TestCorruptModelHTTP(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	ids, _, _ := shopModel(t, c, "shop")
	if err := store.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(41, 42))
	x, err := sp.Encode(randomAttributes(rng))
	if err != nil {
		t.Fatal(err)
	}
	requests := []struct{ method, path, body string }{
		{"GET", "/v1/models/shop", ""},
		{"POST", "/v1/recommend", `{"model": "shop", "context": ` + mustJSON(x) + `}`},
		{"POST", "/v1/recommend", `{"model": "shop", "attributes": ` + mustJSON(randomAttributes(rng)) + `, "exclude": ["` + ids[1] + `"]}`},
		{"POST", "/v1/recommend", `{"model": "shop", "context": ` + mustJSON(x) + `, "candidates": ["` + ids[0] + `", "` + ids[2] + `"]}`},
		{"POST", "/v1/explain", `{"model": "shop", "context": ` + mustJSON(x) + `}`},
		{"GET", "/v1/dashboard?model=shop", ""},
		{"POST", "/v1/arms", `{"model": "shop"}`},
	}
	damages := []struct {
		name string
		f    func(string) string
	}{
		{"emptied", func(string) string { return "" }},
		{"cut by 8 bytes", func(v string) string { return v[:max(len(v)-8, 0)] }},
		{"text", func(string) string { return "x" }},
		{"a negative number", func(string) string { return "-1" }},
		{"a fraction", func(string) string { return "2.5" }},
		{"one more", func(v string) string {
			if n, err := strconv.Atoi(v); err == nil {
				return strconv.Itoa(n + 1)
			}
			return v + "1"
		}},
		{"JSON of the wrong shape", func(string) string { return `{"features": 3}` }},
		{"deleted", nil},
	}
	hgetall := func(key string) map[string]string {
		m, err := c.Do(ctx, c.B().Hgetall().Key(key).Build()).AsStrMap()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	type target struct{ key, field string }
	var targets []target
	root, arm := store.RootKey("shop"), store.ArmKey("shop", ids[0])
	saved := map[string]map[string]string{root: hgetall(root), arm: hgetall(arm)}
	for _, key := range []string{root, arm} {
		for _, f := range slices.Sorted(func(yield func(string) bool) {
			for f := range saved[key] {
				if key == arm || !strings.Contains(f, ":") {
					if !yield(f) {
						return
					}
				}
			}
		}) {
			targets = append(targets, target{key, f})
		}
	}
	calls := 0
	for _, tg := range targets {
		for _, dmg := range damages {
			old := saved[tg.key][tg.field]
			cmd := c.B().Hdel().Key(tg.key).Field(tg.field).Build()
			if dmg.f != nil {
				cmd = c.B().Hset().Key(tg.key).FieldValue().FieldValue(tg.field, dmg.f(old)).Build()
			}
			if err := c.Do(ctx, cmd).Error(); err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(sidecar.New(sidecar.Config{Redis: c, Model: "shop"}).Handler())
			for _, rq := range requests {
				calls++
				what := tg.key + " field " + tg.field + " " + dmg.name + ", " + rq.method + " " + rq.path
				req, _ := http.NewRequest(rq.method, hs.URL+rq.path, strings.NewReader(rq.body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("%s: %v", what, err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				var m map[string]any
				if err != nil || json.Unmarshal(body, &m) != nil {
					t.Errorf("%s: status %d, body %q is not a JSON object (%v)", what, resp.StatusCode, body, err)
					continue
				}
				if resp.StatusCode >= 400 {
					if msg, _ := m["error"].(string); msg == "" || strings.Contains(msg, "user_script") || strings.Contains(msg, "goroutine") {
						t.Errorf("%s: status %d with error %q", what, resp.StatusCode, m["error"])
					}
				} else if resp.StatusCode != 200 {
					t.Errorf("%s: status %d", what, resp.StatusCode)
				}
			}
			hs.Close()
			if err := c.Do(ctx, c.B().Hset().Key(tg.key).FieldValue().FieldValue(tg.field, old).Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d requests over %d damaged fields", calls, len(targets))
}
