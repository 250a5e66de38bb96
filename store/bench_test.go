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
	"github.com/redbandit/redbandit/linucb"
	"github.com/redbandit/redbandit/store"
)

// BenchmarkApply measures one flush of a trainer: a write of every arm of a
// 200-product model in the reference shop's layout (d = 15, four one-hot
// groups), as the trainer makes when all products changed since its last
// flush. redis-µs/op is the script's time inside Redis (INFO commandstats).
func BenchmarkApply(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	const products = 200
	w := store.Write{Model: "bench", Features: featureNames(shopDim), Groups: shopGroups, Lambda: 1}
	for a := 0; a < products; a++ {
		arm := linucb.NewArm(shopDim, 1)
		for e := 0; e < 50; e++ {
			_ = arm.Update(newShopContext(rng), float64(rng.IntN(2)))
		}
		p, err := arm.Solve()
		if err != nil {
			b.Fatal(err)
		}
		w.Arms = append(w.Arms, store.ArmWrite{ID: fmt.Sprintf("dish-%d", a), Arm: arm, Params: p})
	}
	vers, err := w.Apply(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	usec0, calls0 := scriptTime(b, c)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := range w.Arms {
			w.Arms[j].Version = vers[j]
		}
		if vers, err = w.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	usec, calls := scriptTime(b, c)
	b.ReportMetric((usec-usec0)/float64(calls-calls0), "redis-µs/op")
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
