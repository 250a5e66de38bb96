package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
)

// BenchmarkCopy measures a local copy (store.Copy) of reference-shop
// models (d = 15, four one-hot groups) of 200 and 20,000 products:
//
//	load       LoadCopy of the whole model; bytes/product is the Go heap
//	           the copy holds (after a GC), per product
//	recommend  Copy.Recommend of the top 5 for a one-hot context, in
//	           process (no HTTP): compare EVALSHA's Redis time per call
//	refresh    Copy.Refresh after a write of `flush` products (a trainer's
//	           flush; the write itself is not timed): its reload cost
func BenchmarkCopy(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{200, 20_000} {
		name := fmt.Sprintf("shop%d", n)
		var ws []store.Write
		for lo := 0; lo < n; lo += 1000 {
			w := shopWrite(b, rng, name, fmt.Sprintf("p%d-%%d", lo), min(1000, n-lo), func() int { return 20 + rng.IntN(60) })
			if _, err := w.Apply(ctx, c); err != nil {
				b.Fatal(err)
			}
			ws = append(ws, w)
		}
		b.Run(fmt.Sprintf("load/products=%d", n), func(b *testing.B) {
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			var cp *store.Copy
			for range b.N {
				var err error
				if cp, err = store.LoadCopy(ctx, c, name, n); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(m1.HeapAlloc-m0.HeapAlloc)/float64(n), "bytes/product")
			b.ReportMetric(float64(cp.Bytes())/float64(n), "est-bytes/product")
			runtime.KeepAlive(cp)
		})
		cp, err := store.LoadCopy(ctx, c, name, n)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("recommend/products=%d", n), func(b *testing.B) {
			xs := make([][]float64, 64)
			for i := range xs {
				xs[i] = newShopContext(rng)
				// Each pattern is folded on its first request: not timed.
				if _, err := cp.Recommend(store.Query{K: 5, Alpha: 0.1, Context: xs[i]}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				if _, err := cp.Recommend(store.Query{K: 5, Alpha: 0.1, Context: xs[i%len(xs)]}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// With the folded values of the patterns asked for so far.
			b.ReportMetric(float64(cp.Bytes())/float64(n), "est-bytes/product")
		})
		if n < 20_000 {
			continue
		}
		vers := map[string]int64{}
		for _, flush := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("refresh/products=%d/flush=%d", n, flush), func(b *testing.B) {
				for i := range b.N {
					b.StopTimer()
					w := ws[i%len(ws)]
					sub := w
					sub.Arms = nil
					for j := range flush {
						a := w.Arms[(j*7+i)%len(w.Arms)]
						if len(sub.Arms) > 0 && a.ID == sub.Arms[0].ID {
							break
						}
						a.Version = vers[a.ID]
						if a.Version == 0 {
							a.Version = 1
						}
						sub.Arms = append(sub.Arms, a)
					}
					got, err := sub.Apply(ctx, c)
					if err != nil {
						b.Fatal(err)
					}
					for j, a := range sub.Arms {
						vers[a.ID] = got[j]
					}
					b.StartTimer()
					r, err := cp.Refresh(ctx, c, n)
					if err != nil || r.Full {
						b.Fatalf("%+v, %v", r, err)
					}
				}
			})
		}
	}
}
