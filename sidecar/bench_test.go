package sidecar_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/linucb"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/spec"
	"github.com/redbandit/redbandit/store"
)

// BenchmarkSidecar compares POST /v1/recommend with the direct EVALSHA it
// wraps, against one redis-server, for a 200-product reference-shop model:
//
//	clients=1: p50/p99 of sequential calls, the paths interleaved so all
//	           see the same machine conditions; overhead-us is the
//	           difference of the p50s of http and direct; noop is an HTTP
//	           handler that only answers a constant body: its p50 is the
//	           floor of any HTTP hop on this machine
//	clients=16: throughput of each path on its own
func BenchmarkSidecar(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(5, 6))
	w := store.Write{Model: "bench", Features: sp.Names(), Groups: sp.Groups(), Lambda: 1,
		Set: []store.Field{{Name: store.SpecField, Value: sp.JSON()}}}
	for a := 0; a < 200; a++ {
		arm := linucb.NewArm(sp.Dim(), 1)
		for e := 0; e < 20+rng.IntN(60); e++ {
			x, _ := sp.Encode(randomAttributes(rng))
			_ = arm.Update(x, float64(rng.IntN(2)))
		}
		p, err := arm.Solve()
		if err != nil {
			b.Fatal(err)
		}
		w.Arms = append(w.Arms, store.ArmWrite{ID: "p" + string(rune('a'+a%26)) + strings.Repeat("x", a/26), Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, c); err != nil {
		b.Fatal(err)
	}
	s := sidecar.New(sidecar.Config{Redis: c, Model: "bench"})
	if err := s.Prepare(ctx); err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	noop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"items":[]}`))
	}))
	defer noop.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	xs := make([][]float64, 1000)
	bodies := make([]string, len(xs))
	for i := range xs {
		xs[i], _ = sp.Encode(randomAttributes(rng))
		js, _ := json.Marshal(xs[i])
		bodies[i] = `{"context": ` + string(js) + `}`
	}
	direct := func(i int) error {
		items, err := store.Recommend(ctx, c, "bench", store.Query{K: 5, Alpha: 0.1, Context: xs[i%len(xs)]})
		if err == nil && len(items) != 5 {
			b.Fatalf("direct: %d items", len(items))
		}
		return err
	}
	viaHTTP := func(i int) error {
		resp, err := client.Post(hs.URL+"/v1/recommend", "application/json", strings.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"event_id"`) {
			b.Fatalf("http: %d %s", resp.StatusCode, body)
		}
		return nil
	}

	viaNoop := func(i int) error {
		resp, err := client.Post(noop.URL, "application/json", strings.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}

	b.Run("clients=1", func(b *testing.B) {
		lat := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			for _, p := range []struct {
				name string
				f    func(int) error
			}{{"direct", direct}, {"http", viaHTTP}, {"noop", viaNoop}} {
				t0 := time.Now()
				if err := p.f(i); err != nil {
					b.Fatal(err)
				}
				lat[p.name] = append(lat[p.name], time.Since(t0))
			}
		}
		p50 := map[string]float64{}
		for name, l := range lat {
			slices.Sort(l)
			p50[name] = float64(l[len(l)/2]) / 1e3
			b.ReportMetric(p50[name], name+"-p50-us")
			b.ReportMetric(float64(l[len(l)*99/100])/1e3, name+"-p99-us")
		}
		b.ReportMetric(p50["http"]-p50["direct"], "overhead-us")
	})
	for _, p := range []struct {
		name string
		f    func(int) error
	}{{"direct", direct}, {"http", viaHTTP}} {
		b.Run("clients=16/"+p.name, func(b *testing.B) {
			b.SetParallelism(8)
			var n atomic.Int64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := int(n.Add(1)) * 97
				for pb.Next() {
					if err := p.f(i); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
