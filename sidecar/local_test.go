package sidecar_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
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

// serve runs a sidecar with cfg (its Redis and default model set by the
// caller) on a loopback port until the test ends, and returns its URL.
func serve(t testing.TB, cfg sidecar.Config) string {
	t.Helper()
	s := sidecar.New(cfg)
	if err := s.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return "http://" + ln.Addr().String()
}

// postRaw posts body to url+path and returns the status and body.
func postRaw(t testing.TB, url, path, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// metric returns the value of the sample named (with labels) exactly as
// given on the sidecar's /metrics, or 0 if there is none.
func metric(t testing.TB, url, sample string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// waitFor polls cond every millisecond until it holds or limit passes.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// localShop writes a model of the reference spec with n products (one
// write per 1,000): every fourth has no events (exact ties among them).
func localShop(t testing.TB, c rueidis.Client, name string, n int, rng *rand.Rand) []string {
	t.Helper()
	sp := spec.Reference()
	var ids []string
	for lo := 0; lo < n; lo += 1000 {
		w := store.Write{Model: name, Features: sp.Names(), Groups: sp.Groups(), Lambda: 1,
			Set: []store.Field{{Name: store.SpecField, Value: sp.JSON()}}}
		for a := lo; a < min(n, lo+1000); a++ {
			arm := linucb.NewArm(sp.Dim(), 1)
			for e := 0; a%4 != 0 && e < rng.IntN(40); e++ {
				x, err := sp.Encode(randomAttributes(rng))
				if err != nil {
					t.Fatal(err)
				}
				_ = arm.Update(x, float64(rng.IntN(2)))
			}
			p, err := arm.Solve()
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("item-%03d", a)
			ids = append(ids, id)
			w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
		}
		if _, err := w.Apply(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestLocalScoringAnswersAsRedis runs two sidecars on one Redis, one
// scoring locally and one with the script, and sends both the same random
// requests — one-hot and other contexts, candidates, exclusions, k, alpha,
// and requests that fail — once the local copy is loaded: the same status,
// the same ids in the same order, scores within 1e-12, the same error
// text; the metrics show which path served. Then a write is served by the
// local copy within the staleness bound.
func TestLocalScoringAnswersAsRedis(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	rng := rand.New(rand.NewPCG(19, 10))
	ids := localShop(t, c, "shop", 200, rng)
	local := serve(t, sidecar.Config{Redis: c, Model: "shop", Scoring: sidecar.ScoringLocal, LocalPoll: 2 * time.Millisecond})
	remote := serve(t, sidecar.Config{Redis: c, Model: "shop"})

	// The first request registers the model; Redis answers it.
	if status, body := postRaw(t, local, "/v1/recommend", `{"context": [0.5,0.5,0.5,1,0,1,0,0,0,0,1,0,0,1,0]}`); status != 200 {
		t.Fatalf("first request: %d %s", status, body)
	}
	if got := metric(t, local, `redbandit_sidecar_local_fallbacks_total{reason="unloaded"}`); got != 1 {
		t.Fatalf("fallbacks before the copy loaded: %v, want 1", got)
	}
	waitFor(t, 5*time.Second, "the copy loads", func() bool {
		return metric(t, local, `redbandit_sidecar_local_products{model="shop"}`) == 200
	})

	sp := spec.Reference()
	requests := 0
	for i := range 600 {
		req := map[string]any{}
		var x []float64
		switch i % 4 {
		case 0, 1:
			x, _ = sp.Encode(randomAttributes(rng))
		case 2:
			x = make([]float64, sp.Dim())
			for j := range x {
				if rng.IntN(3) == 0 {
					x[j] = rng.NormFloat64()
				}
			}
		default:
			x, _ = sp.Encode(randomAttributes(rng))
			x[rng.IntN(len(x))] = 1
		}
		req["context"] = x
		if rng.IntN(3) == 0 {
			req["k"] = 1 + rng.IntN(250)
		}
		if rng.IntN(3) == 0 {
			req["alpha"] = rng.Float64() * 3
		}
		pick := func() string {
			if rng.IntN(10) == 0 {
				return "new-" + strconv.Itoa(rng.IntN(3))
			}
			return ids[rng.IntN(len(ids))]
		}
		if rng.IntN(3) == 0 {
			cands := []string{}
			for range rng.IntN(50) {
				cands = append(cands, pick())
			}
			req["candidates"] = cands
		}
		if rng.IntN(2) == 0 {
			var ex []string
			for range rng.IntN(30) {
				ex = append(ex, pick())
			}
			req["exclude"] = ex
		}
		// The same event id to both sidecars: the same tie order. Some
		// requests leave it out, to be answered with a new one.
		if i%5 != 4 {
			req["event_id"] = fmt.Sprintf("local-%d", i)
		}
		switch i % 50 { // requests that fail
		case 7:
			req["context"] = x[:14] // the script's own error
		case 17:
			req["context"] = []float64{1e200, 1e200, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0} // scores would overflow
		case 27:
			req["alpha"] = -1
		case 37:
			req["model"] = "nope"
		}
		b, _ := json.Marshal(req)
		ls, lb := postRaw(t, local, "/v1/recommend", string(b))
		rs, rb := postRaw(t, remote, "/v1/recommend", string(b))
		requests++
		what := fmt.Sprintf("request %d %s", i, b)
		if ls != rs {
			t.Fatalf("%s: local %d %s, redis %d %s", what, ls, lb, rs, rb)
		}
		var lr, rr struct {
			Items   []sidecar.Item
			EventID string `json:"event_id"`
			Error   string
		}
		_ = json.Unmarshal(lb, &lr)
		_ = json.Unmarshal(rb, &rr)
		if id, ok := req["event_id"]; ok && ls == 200 && (lr.EventID != id || rr.EventID != id) {
			t.Fatalf("%s: event ids local %q, redis %q", what, lr.EventID, rr.EventID)
		}
		if i%5 == 4 { // different seeds: only the scores must agree
			slices.SortFunc(lr.Items, func(a, b sidecar.Item) int { return cmp.Compare(b.Score, a.Score) })
			slices.SortFunc(rr.Items, func(a, b sidecar.Item) int { return cmp.Compare(b.Score, a.Score) })
			for j := range lr.Items {
				lr.Items[j].ID, rr.Items[j].ID = "", ""
			}
		}
		if lr.Error != rr.Error || len(lr.Items) != len(rr.Items) {
			t.Fatalf("%s: local %s, redis %s", what, lb, rb)
		}
		for j := range lr.Items {
			l, r := lr.Items[j], rr.Items[j]
			if l.ID != r.ID || math.Abs(l.Score-r.Score) > 1e-12*math.Max(math.Abs(l.Score), math.Abs(r.Score)) {
				t.Fatalf("%s: item %d local %v, redis %v\nlocal %s\nredis %s", what, j, l, r, lb, rb)
			}
		}
	}
	// Local: all but the first, the wrong-length contexts (the script's
	// error), alpha -1 (refused before scoring) and the unknown model.
	fails := requests / 50
	if got, want := metric(t, local, `redbandit_sidecar_scored_total{path="local"}`), float64(requests-3*fails); got != want {
		t.Errorf("scored locally: %v, want %v", got, want)
	}
	if got := metric(t, local, `redbandit_sidecar_local_fallbacks_total{reason="query"}`); got != float64(fails) {
		t.Errorf("fallbacks for the wrong-length contexts: %v, want %v", got, fails)
	}
	if got := metric(t, remote, `redbandit_sidecar_scored_total{path="redis"}`); got != float64(requests-fails) {
		t.Errorf("scored by the script in the redis sidecar: %v, want %v", got, requests-fails)
	}
	if age := metric(t, local, `redbandit_sidecar_local_copy_age_seconds{model="shop"}`); age <= 0 || age > 0.5 {
		t.Errorf("copy age %v s", age)
	}
	for url, want := range map[string]sidecar.ScoringPanel{local: {Mode: "local", Copied: true, Products: 200}, remote: {Mode: "redis"}} {
		resp, err := http.Get(url + "/v1/dashboard?model=shop")
		if err != nil {
			t.Fatal(err)
		}
		var d sidecar.DashboardResponse
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		got := d.Scoring
		if err != nil || got.Mode != want.Mode || got.Copied != want.Copied || got.Products != want.Products || (got.AgeS != nil) != want.Copied {
			t.Errorf("dashboard scoring panel %+v, %v; want %+v", got, err, want)
		}
	}

	// A write: a product becomes the best for x; the local sidecar serves
	// it well within the staleness bound.
	x := []float64{0.5, 0.5, 0.5, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0}
	body := `{"context": [0.5,0.5,0.5,1,0,1,0,0,0,0,1,0,0,1,0], "k": 1}`
	arm := linucb.NewArm(sp.Dim(), 1)
	for range 50 {
		_ = arm.Update(x, 5) // a mean near 5: the best by far
	}
	p, _ := arm.Solve()
	vers, err := c.Do(context.Background(), c.B().Hget().Key(store.ArmKey("shop", "item-123")).Field("ver").Build()).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	w := store.Write{Model: "shop", Features: sp.Names(), Groups: sp.Groups(), Lambda: 1,
		Arms: []store.ArmWrite{{ID: "item-123", Version: vers, Arm: arm, Params: p}}}
	if _, err := w.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	fallbacks := func() float64 {
		var n float64
		for _, r := range []string{"unloaded", "too_large", "stale", "query"} {
			n += metric(t, local, `redbandit_sidecar_local_fallbacks_total{reason="`+r+`"}`)
		}
		return n
	}
	before := fallbacks()
	if _, b := postRaw(t, remote, "/v1/recommend", body); !bytes.Contains(b, []byte(`"item-123"`)) {
		t.Fatalf("the script does not serve the write: %s", b)
	}
	took := waitFor(t, time.Second, "the write served locally", func() bool {
		_, b := postRaw(t, local, "/v1/recommend", body)
		return bytes.Contains(b, []byte(`"item-123"`))
	})
	t.Logf("write served locally after %v", took)
	if got := fallbacks(); got != before {
		t.Errorf("the script answered %v requests after the write", got-before)
	}
	if got := metric(t, local, `redbandit_sidecar_local_reloaded_products_total{kind="changed"}`); got != 1 {
		t.Errorf("products reloaded from the change record: %v, want 1", got)
	}
}

// TestLocalScoringFallsBack: a model with more products than
// --local-max-products, and a copy older than --max-staleness, are scored
// by the script (the metrics say why), with the script's answers.
func TestLocalScoringFallsBack(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	rng := rand.New(rand.NewPCG(19, 11))
	localShop(t, c, "shop", 30, rng)
	body := `{"context": [0.5,0.5,0.5,1,0,1,0,0,0,0,1,0,0,1,0], "k": 3}`
	want, err := store.Recommend(context.Background(), c, "shop", store.Query{K: 3, Alpha: linucb.DefaultAlpha,
		Context: []float64{0.5, 0.5, 0.5, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(url string) {
		t.Helper()
		status, b := postRaw(t, url, "/v1/recommend", body)
		var r struct{ Items []sidecar.Item }
		if err := json.Unmarshal(b, &r); status != 200 || err != nil || len(r.Items) != 3 {
			t.Fatalf("%d %s", status, b)
		}
		for i, it := range r.Items {
			if it.ID != want[i].ID || it.Score != want[i].Score {
				t.Fatalf("%s, want %v", b, want)
			}
		}
	}

	large := serve(t, sidecar.Config{Redis: c, Model: "shop", Scoring: sidecar.ScoringLocal, LocalMaxProducts: 29, LocalPoll: time.Millisecond})
	check(large) // registers the model
	waitFor(t, 2*time.Second, "the model found too large", func() bool {
		check(large)
		return metric(t, large, `redbandit_sidecar_local_fallbacks_total{reason="too_large"}`) > 0
	})
	if got := metric(t, large, `redbandit_sidecar_scored_total{path="local"}`); got != 0 {
		t.Fatalf("a model over the limit scored locally %v times", got)
	}

	stale := serve(t, sidecar.Config{Redis: c, Model: "shop", Scoring: sidecar.ScoringLocal, MaxStaleness: time.Nanosecond, LocalPoll: time.Millisecond})
	check(stale)
	waitFor(t, 2*time.Second, "the copy loads", func() bool {
		return metric(t, stale, `redbandit_sidecar_local_products{model="shop"}`) == 30
	})
	for range 10 {
		check(stale)
	}
	if got := metric(t, stale, `redbandit_sidecar_local_fallbacks_total{reason="stale"}`); got != 10 {
		t.Fatalf("stale fallbacks %v, want 10", got)
	}
	if got := metric(t, stale, `redbandit_sidecar_scored_total{path="local"}`); got != 0 {
		t.Fatalf("a stale copy scored %v requests", got)
	}
	if got := metric(t, stale, `redbandit_sidecar_scored_total{path="redis"}`); got != 11 {
		t.Fatalf("the script scored %v requests, want 11", got)
	}
	// The dashboard says the script answers though a copy exists: not
	// current (Copied false) but with its age and products.
	resp, err := http.Get(stale + "/v1/dashboard?model=shop")
	if err != nil {
		t.Fatal(err)
	}
	var d sidecar.DashboardResponse
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if got := d.Scoring; err != nil || got.Mode != "local" || got.Copied || got.AgeS == nil || *got.AgeS <= 0 || got.Products != 30 {
		t.Errorf("dashboard scoring panel of the stale sidecar %+v, %v", got, err)
	}
}
