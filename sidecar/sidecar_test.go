package sidecar_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
)

var genders = []string{"F", "M"}
var sources = []string{"Display", "Email", "Facebook", "Organic", "Search"}

// randomAttributes returns raw attributes of a random visit in January 2026.
func randomAttributes(rng *rand.Rand) map[string]any {
	ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.Int64N(int64(30 * 24 * time.Hour))))
	return map[string]any{
		"age": 16 + 54*rng.Float64(), "latitude": -38.1 + 0.6*rng.Float64(), "longitude": 144.6 + 0.8*rng.Float64(),
		"gender": genders[rng.IntN(2)], "traffic_source": sources[rng.IntN(5)], "timestamp": ts.Format(time.RFC3339),
	}
}

// shopModel writes a 40-product model with the reference spec, trained on
// random encoded visits, and returns the Go-side arms and parameters by
// product.
func shopModel(t *testing.T, c rueidis.Client, name string) (ids []string, params map[string]linucb.Params, arms map[string]*linucb.Arm) {
	t.Helper()
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(3, 4))
	w := store.Write{Model: name, Features: sp.Names(), Groups: sp.Groups(), Lambda: 1,
		Set: []store.Field{{Name: store.SpecField, Value: sp.JSON()}}}
	params, arms = map[string]linucb.Params{}, map[string]*linucb.Arm{}
	for a := 0; a < 40; a++ {
		arm := linucb.NewArm(sp.Dim(), 1)
		for e := 0; e < rng.IntN(50); e++ {
			x, err := sp.Encode(randomAttributes(rng))
			if err != nil {
				t.Fatal(err)
			}
			if err := arm.Update(x, float64(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("dish-%02d", a)
		ids = append(ids, id)
		params[id], arms[id] = p, arm
		w.Events += arm.N()
		w.Rewards += arm.Rewards()
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	if _, err := w.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return ids, params, arms
}

type fixture struct {
	t      *testing.T
	srv    *redistest.Server
	http   *httptest.Server
	ids    []string
	params map[string]linucb.Params
	arms   map[string]*linucb.Arm
}

func newFixture(t *testing.T, cfg sidecar.Config) *fixture {
	srv := redistest.Start(t)
	c := srv.Client()
	f := &fixture{t: t, srv: srv}
	f.ids, f.params, f.arms = shopModel(t, c, "shop")
	cfg.Redis, cfg.Model = c, "shop"
	cfg.Timeout = 500 * time.Millisecond
	s := sidecar.New(cfg)
	if err := s.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(s.Handler())
	t.Cleanup(f.http.Close)
	return f
}

func (f *fixture) post(path, body string) (int, map[string]any) {
	f.t.Helper()
	resp, err := http.Post(f.http.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	return decodeResp(f.t, resp)
}

func (f *fixture) get(path string) (int, map[string]any) {
	f.t.Helper()
	resp, err := http.Get(f.http.URL + path)
	if err != nil {
		f.t.Fatal(err)
	}
	return decodeResp(f.t, resp)
}

func decodeResp(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("status %d, body %q is not a JSON object: %v", resp.StatusCode, body, err)
	}
	return resp.StatusCode, m
}

// reference ranks every product of the fixture with the Go scorer.
func (f *fixture) reference(x []float64, alpha float64, k int) []sidecar.Item {
	ps := make([]linucb.Params, len(f.ids))
	for i, id := range f.ids {
		ps[i] = f.params[id]
	}
	var out []sidecar.Item
	for _, r := range linucb.Rank(x, ps, alpha, k) {
		out = append(out, sidecar.Item{ID: f.ids[r.Index], Score: r.Score})
	}
	return out
}

func items(t *testing.T, m map[string]any) []sidecar.Item {
	t.Helper()
	var out []sidecar.Item
	for _, v := range m["items"].([]any) {
		it := v.(map[string]any)
		out = append(out, sidecar.Item{ID: it["id"].(string), Score: it["score"].(float64)})
	}
	return out
}

func sameItems(t *testing.T, what string, got, want []sidecar.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i].ID != want[i].ID || math.Abs(got[i].Score-want[i].Score) > 1e-9*math.Max(1, math.Abs(want[i].Score)) {
			t.Fatalf("%s: %v, want %v", what, got, want)
		}
	}
}

// TestRecommendForms: the dense, named and raw-attribute forms of the same
// context give the Go reference's answer, through EVALSHA and FCALL_RO.
func TestRecommendForms(t *testing.T) {
	for _, fcall := range []bool{false, true} {
		f := newFixture(t, sidecar.Config{FCall: fcall})
		sp := spec.Reference()
		rng := rand.New(rand.NewPCG(9, 9))
		for i := 0; i < 10; i++ {
			attrs := randomAttributes(rng)
			x, err := sp.Encode(attrs)
			if err != nil {
				t.Fatal(err)
			}
			want := f.reference(x, 0.1, 5)
			dense, _ := json.Marshal(x)
			named := map[string]float64{}
			for j, name := range sp.Names() {
				if x[j] != 0 {
					named[name] = x[j]
				}
			}
			namedJSON, _ := json.Marshal(named)
			attrJSON, _ := json.Marshal(attrs)
			for form, body := range map[string]string{
				"dense":      `{"context": ` + string(dense) + `}`,
				"named":      `{"model": "shop", "context": ` + string(namedJSON) + `}`,
				"attributes": `{"attributes": ` + string(attrJSON) + `, "k": 5, "alpha": 0.1}`,
			} {
				status, m := f.post("/v1/recommend", body)
				if status != 200 {
					t.Fatalf("fcall=%v %s: status %d %v", fcall, form, status, m)
				}
				if m["model"] != "shop" || len(m["event_id"].(string)) != 32 {
					t.Fatalf("%s: reply %v", form, m)
				}
				sameItems(t, fmt.Sprintf("fcall=%v %s %d", fcall, form, i), items(t, m), want)
			}
		}
		// Candidates and exclusions reach the script.
		x, _ := sp.Encode(randomAttributes(rng))
		dense, _ := json.Marshal(x)
		best := f.reference(x, 0.1, 1)[0].ID
		status, m := f.post("/v1/recommend", `{"context": `+string(dense)+`, "k": 2, "candidates": ["dish-01", "dish-02", "`+best+`"], "exclude": ["`+best+`"]}`)
		if status != 200 || len(items(t, m)) != 2 {
			t.Fatalf("candidates: %d %v", status, m)
		}
		for _, it := range items(t, m) {
			if it.ID == best || (it.ID != "dish-01" && it.ID != "dish-02") {
				t.Fatalf("candidates/exclude not applied: %v", m)
			}
		}
	}
}

func TestBadRequests(t *testing.T) {
	f := newFixture(t, sidecar.Config{MaxBody: 4096})
	ok := `"timestamp": "2026-01-03T08:15:00+11:00", "age": 30, "latitude": -37.8, "longitude": 145, "gender": "F"`
	cases := []struct {
		name, body string
		status     int
		msg        string
	}{
		{"wrong dimension", `{"context": [1, 0, 1]}`, 400, "context values"},
		{"unknown feature", `{"context": {"age": 0.5, "shoe_size": 1}}`, 400, "unknown feature"},
		{"NaN as a string", `{"context": [1, "NaN", 0]}`, 400, "array of numbers"},
		{"k = 0", `{"context": [1], "k": 0}`, 400, "k must be"},
		{"k beyond max-k", `{"context": {"age": 1}, "k": 1001}`, 400, "k must be in 1..1000"},
		{"alpha overflowing the scores", `{"context": {"age": 1, "gender_F": 1, "morning": 1, "weekend": 1}, "alpha": 1e308}`, 400, "overflow"},
		{"negative alpha", `{"context": [1], "alpha": -1}`, 400, "alpha"},
		{"unknown model", `{"model": "nope", "context": {"age": 1}}`, 404, "no model"},
		{"unknown model, dense", `{"model": "nope", "context": [1]}`, 404, "no model"},
		{"malformed JSON", `{"context": [1, 2`, 400, "malformed JSON"},
		{"unknown field", `{"context": [1], "kk": 3}`, 400, "unknown field"},
		{"trailing data", `{"context": [1]} {}`, 400, "after the object"},
		{"no context", `{"k": 3}`, 400, "missing context"},
		{"both forms", `{"context": [1], "attributes": {"age": 3}}`, 400, "not both"},
		{"unknown category", `{"attributes": {` + ok + `, "traffic_source": "Radio"}}`, 400, "unknown value"},
		{"missing attribute", `{"attributes": {` + ok + `}}`, 400, "missing attribute"},
		{"context not array or object", `{"context": "1,2,3"}`, 400, "array of numbers or an object"},
		{"oversized body", `{"context": [` + strings.Repeat("0,", 5000) + `0]}`, 413, "too large"},
	}
	for _, c := range cases {
		status, m := f.post("/v1/recommend", c.body)
		msg, _ := m["error"].(string)
		if status != c.status || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, status, msg, c.status, c.msg)
		}
		if strings.Contains(msg, "goroutine") || strings.Contains(msg, "user_script") {
			t.Errorf("%s: a trace in the reply: %q", c.name, msg)
		}
	}
	if status, m := f.get("/v1/nothing"); status != 404 || m["error"] == nil {
		t.Errorf("unknown endpoint: %d %v", status, m)
	}
	resp, err := http.Get(f.http.URL + "/v1/recommend")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/recommend: %d, want 405", resp.StatusCode)
	}
}

// TestRedisRestart: while Redis is down, requests fail fast with 503 and
// /readyz says not ready; once it is back, both recover by themselves.
func TestRedisRestart(t *testing.T) {
	f := newFixture(t, sidecar.Config{FCall: true})
	x := make([]float64, 15)
	x[0], x[3], x[5], x[13] = 0.5, 1, 1, 1
	dense, _ := json.Marshal(x)
	body := `{"context": ` + string(dense) + `}`
	if status, m := f.post("/v1/recommend", body); status != 200 {
		t.Fatalf("before: %d %v", status, m)
	}
	if status, _ := f.get("/readyz"); status != 200 {
		t.Fatalf("readyz before: %d", status)
	}
	// Persist the model and the function library, then take Redis down.
	c := f.srv.Client()
	if err := c.Do(context.Background(), c.B().Save().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	f.srv.Stop()
	start := time.Now()
	status, m := f.post("/v1/recommend", body)
	if status != 503 || m["error"] == nil {
		t.Fatalf("Redis down: %d %v, want 503", status, m)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Redis down: the request took %v", d)
	}
	if status, _ := f.get("/readyz"); status != 503 {
		t.Fatalf("readyz with Redis down: %d, want 503", status)
	}
	if status, _ := f.get("/healthz"); status != 200 {
		t.Fatalf("healthz with Redis down: %d, want 200", status)
	}
	f.srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, m = f.post("/v1/recommend", body)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %d %v", status, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, _ := f.get("/readyz"); status != 200 {
		t.Fatalf("readyz after the restart: %d", status)
	}
}

func TestModelHealthMetrics(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	// The trainers' counters in the root, as their writes leave them.
	c := f.srv.Client()
	if err := c.Do(context.Background(), c.B().Hset().Key(store.RootKey("shop")).FieldValue().
		FieldValue("events", "1234").FieldValue("invalid", "7").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	status, m := f.get("/v1/models/shop")
	if status != 200 || m["dimension"].(float64) != 15 || m["products"].(float64) != 40 || m["spec"] == nil || len(m["groups"].([]any)) != 4 ||
		m["events"].(float64) != 1234 || m["dead_letters"].(float64) != 7 {
		t.Fatalf("model: %d %v", status, m)
	}
	if status, _ := f.get("/v1/models/nope"); status != 404 {
		t.Fatalf("unknown model: %d", status)
	}
	if status, m := f.get("/healthz"); status != 200 || m["status"] != "ok" {
		t.Fatalf("healthz: %d %v", status, m)
	}
	if status, m := f.get("/readyz"); status != 200 {
		t.Fatalf("readyz: %d %v", status, m)
	}
	f.post("/v1/recommend", `{"context": [1]}`)
	resp, err := http.Get(f.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`redbandit_sidecar_requests_total{endpoint="recommend",status="400"} 1`,
		`redbandit_sidecar_requests_total{endpoint="model",status="200"} 1`,
		`redbandit_sidecar_request_seconds_bucket{endpoint="recommend",status="400"`,
		`redbandit_sidecar_redis_seconds_bucket{op="recommend"`,
		`redbandit_model_events{model="shop"} 1234`,
		`redbandit_model_dead_letters{model="shop"} 7`,
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %s\n%s", want, body)
		}
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestExplain: the explained items are the recommended ones, and each
// score splits into the Go reference's estimate xᵀθ and bonus α√(xᵀA⁻¹x);
// a candidate the model has never seen is the prior arm (θ = 0, A⁻¹ = I).
func TestExplain(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(12, 12))
	for i := 0; i < 5; i++ {
		x, _ := sp.Encode(randomAttributes(rng))
		want := f.reference(x, 0.3, 4)
		status, m := f.post("/v1/explain", `{"context": `+mustJSON(x)+`, "k": 4, "alpha": 0.3}`)
		if status != 200 {
			t.Fatalf("explain: %d %v", status, m)
		}
		got := m["items"].([]any)
		if len(got) != len(want) {
			t.Fatalf("explain: %d items, want %d", len(got), len(want))
		}
		for j, g := range got {
			it := g.(map[string]any)
			mean, q := linucb.MeanVar(x, f.params[want[j].ID])
			bonus := 0.3 * math.Sqrt(q)
			score, gm, gb := it["score"].(float64), it["mean"].(float64), it["bonus"].(float64)
			if it["id"] != want[j].ID || math.Abs(score-want[j].Score) > 1e-9 || math.Abs(gm-mean) > 1e-9 || math.Abs(gb-bonus) > 1e-9 ||
				math.Abs(gm+gb-score) > 1e-9 {
				t.Fatalf("item %d: %v; want %s score %v = mean %v + bonus %v", j, it, want[j].ID, want[j].Score, mean, bonus)
			}
		}
	}
	x := make([]float64, 15)
	x[0], x[3] = 0.5, 1
	status, m := f.post("/v1/explain", `{"context": `+mustJSON(x)+`, "k": 1, "alpha": 1, "candidates": ["brand-new"]}`)
	if status != 200 {
		t.Fatalf("explain a new product: %d %v", status, m)
	}
	it := m["items"].([]any)[0].(map[string]any)
	if it["mean"].(float64) != 0 || math.Abs(it["bonus"].(float64)-math.Sqrt(1.25)) > 1e-12 || it["events"].(float64) != 0 {
		t.Fatalf("a new product: %v, want mean 0, bonus √1.25, no events", it)
	}
}
