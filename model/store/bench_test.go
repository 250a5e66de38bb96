package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/store"
)

// BenchmarkApply measures one flush of a trainer into a 200-product model
// in the reference shop's layout (d = 15, four one-hot groups): a write of
// every arm (arms=200, as the trainer makes when all products changed
// since its last flush), of 20 and of 1 spread over the model.
// redis-µs/op is the script's time inside Redis (INFO commandstats).
func BenchmarkApply(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	const products = 200
	w := shopWrite(b, rng, "bench", "dish-%d", products, func() int { return 50 })
	vers, err := w.Apply(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{products, 67, 20, 1} {
		b.Run(fmt.Sprintf("arms=%d", n), func(b *testing.B) {
			stride := products / n
			idx := make([]int, n)
			sub := w
			sub.Arms = make([]store.ArmWrite, n)
			usec0, calls0 := scriptTime(b, c)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// n arms spread over the model, a different set each time
				// (all of them in index order for n = products).
				for j := range idx {
					idx[j] = j*stride + i%stride
					sub.Arms[j] = w.Arms[idx[j]]
					sub.Arms[j].Version = vers[idx[j]]
				}
				got, err := sub.Apply(ctx, c)
				if err != nil {
					b.Fatal(err)
				}
				for j, a := range idx {
					vers[a] = got[j]
				}
			}
			b.StopTimer()
			usec, calls := scriptTime(b, c)
			b.ReportMetric((usec-usec0)/float64(calls-calls0), "redis-µs/op")
		})
	}
}

// scriptTime returns the total µs and calls of EVALSHA and EVAL so far.
func scriptTime(b *testing.B, c rueidis.Client) (usec float64, calls int64) {
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") && !strings.HasPrefix(line, "cmdstat_eval:") {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(line[strings.Index(line, ":")+1:]), ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				calls += int64(f)
			case "usec":
				usec += f
			}
		}
	}
	return usec, calls
}

// BenchmarkRecommendTies measures what a seed costs where it matters: a
// cold start, 200 products of the reference shop's layout of which 180 are
// fresh (all tied) and 20 trained, scanned for k = 5 and 50, unseeded
// (ties in arm order) and with a new seed per call (tie keys computed for
// every fresh arm that meets another in the top-k). The two alternate per
// call so that they share the machine's conditions; redis-µs/op is the
// script's time inside Redis of each (INFO commandstats: one is sent as
// EVALSHA_RO, the other as EVALSHA).
func BenchmarkRecommendTies(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(8, 8))
	a := 0
	w := shopWrite(b, rng, "cold", "dish-%03d", 200, func() int {
		a++
		if a%10 == 0 {
			return 20
		}
		return 0
	})
	if _, err := w.Apply(ctx, c); err != nil {
		b.Fatal(err)
	}
	if err := store.Load(ctx, c); err != nil {
		b.Fatal(err)
	}
	for _, k := range []int{5, 50} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			x := newShopContext(rng)
			stat := func(name string) (float64, int64) {
				info, err := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
				if err != nil {
					b.Fatal(err)
				}
				for _, line := range strings.Split(info, "\n") {
					if strings.HasPrefix(line, "cmdstat_"+name+":") {
						var calls int64
						var usec float64
						for _, kv := range strings.Split(strings.TrimSpace(line[strings.Index(line, ":")+1:]), ",") {
							k, v, _ := strings.Cut(kv, "=")
							f, _ := strconv.ParseFloat(v, 64)
							switch k {
							case "calls":
								calls = int64(f)
							case "usec":
								usec = f
							}
						}
						return usec, calls
					}
				}
				return 0, 0
			}
			_, _ = c.Do(ctx, c.B().ConfigResetstat().Build()).ToString()
			for i := 0; b.Loop(); i++ {
				q := store.Query{K: k, Alpha: 1, Context: x}
				args := q.Args()
				seeded := append(q.Args(), "SEED", strconv.Itoa(1+i%1000000))
				// unseeded as EVALSHA_RO, seeded as EVALSHA (the script is loaded)
				if err := c.Do(ctx, c.B().EvalshaRo().Sha1(lua.RecommendSHA()).Numkeys(1).Key(store.RootKey("cold")).Arg(args...).Build()).Error(); err != nil {
					b.Fatal(err)
				}
				if err := c.Do(ctx, c.B().Evalsha().Sha1(lua.RecommendSHA()).Numkeys(1).Key(store.RootKey("cold")).Arg(seeded...).Build()).Error(); err != nil {
					b.Fatal(err)
				}
			}
			u0, n0 := stat("evalsha_ro")
			u1, n1 := stat("evalsha")
			if n0 > 0 && n1 > 0 {
				b.ReportMetric(u0/float64(n0), "unseeded-µs/op")
				b.ReportMetric(u1/float64(n1), "seeded-µs/op")
			}
		})
	}
}
