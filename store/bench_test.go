package store_test

// Benchmarks of the serving path, all against one redis-server started by
// BenchmarkServing, so that the numbers of the different paths are comparable:
//
//	op=ping              PING: the round-trip floor
//	op=evalsha-return1   EVALSHA of `return 1`: the floor of any script call
//	op=evalsha           store.Recommend (EVALSHA or EVALSHA_RO of recommend.lua),
//	                     k=5, α=0.1
//	op=fcall_ro          store.RecommendFCall (FCALL_RO rb_recommend)
//	op=client-pipeline   the reference article's client: one pipelined round
//	                     trip of HMGET rb:{M}:arm:<id> theta ainv for every
//	                     product, scored in Go with linucb.Score, top 5
//
// over models of the reference shop's shape (d = 15, 7 non-zero features per
// context) with arms=50, 200, 2000 and 20000 products, plus a candidate list
// of 50 products inside the 20000-product model (arms=20000/cands=50, to be
// compared with arms=50).
//
// Every operation runs in two modes:
//
//	clients=1   one caller in a sequential loop; reports the p50 and p99
//	            latency of single calls (p50-us, p99-us)
//	clients=16  16 goroutines sharing the client (b.RunParallel); reports
//	            the throughput (ops/s)
//
// Each model is built, written and checked against the Go reference scorer
// once per run of BenchmarkServing (a "# setup" line gives the time it took),
// not once per sub-benchmark. scripts/bench.sh runs the set with fixed bench
// times; it leaves out arms=20000/op=client-pipeline/clients=16 by default
// (about 4 ops/s, with 16 fetches of 20000 arms, ~0.8 GB, in flight).

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/linucb"
	"github.com/redbandit/redbandit/store"
)

const (
	benchK           = 5   // products per recommendation
	benchAlpha       = 0.1 // exploration weight
	benchContexts    = 1000
	benchCandidates  = 50 // size of the candidate lists
	saturatedClients = 16 // goroutines of the clients=N mode
)

// shopFeatures is the context layout of the reference shop: three continuous
// features scaled to [0,1], then four one-hot groups, so every context has
// exactly 7 non-zero entries.
var shopFeatures = []string{
	"age", "latitude", "longitude",
	"gender_female", "gender_male",
	"source_direct", "source_search", "source_social", "source_email", "source_ads",
	"time_morning", "time_afternoon", "time_evening",
	"day_weekday", "day_weekend",
}

var shopDim = len(shopFeatures)

// shopContext fills x with a random reference-style context.
func shopContext(rng *rand.Rand, x []float64) {
	clear(x)
	x[0] = 1 - rng.Float64() // (0,1]: never zero, so always 7 non-zero entries
	x[1] = 1 - rng.Float64()
	x[2] = 1 - rng.Float64()
	x[3+rng.IntN(2)] = 1
	x[5+rng.IntN(5)] = 1
	x[10+rng.IntN(3)] = 1
	x[13+rng.IntN(2)] = 1
}

func shopContexts(rng *rand.Rand, n int) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		out[i] = make([]float64, shopDim)
		shopContext(rng, out[i])
	}
	return out
}

// benchModel is a model written to Redis, with the Go-side parameters of its
// arms in arm-index order and a pinned HMGET theta ainv command per arm.
type benchModel struct {
	name   string
	ids    []string
	params []linucb.Params
	fetch  []rueidis.Completed
}

// buildShopModel trains n arms on seeded random events (20–80 each, Bernoulli
// rewards whose probability depends on the context through a per-arm hidden
// weight vector), writes them with store.Write in chunks of
// store.DefaultBlock arms, checks the stored metadata and prints how long
// each step took.
func buildShopModel(b *testing.B, c rueidis.Client, name string, n int, seed uint64) *benchModel {
	b.Helper()
	ctx := context.Background()
	start := time.Now()
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	m := &benchModel{name: name, ids: make([]string, n), params: make([]linucb.Params, n), fetch: make([]rueidis.Completed, n)}
	arms := make([]*linucb.Arm, n)
	x := make([]float64, shopDim)
	w := make([]float64, shopDim)
	for a := range n {
		arm := linucb.NewArm(shopDim, linucb.DefaultLambda)
		base := 0.02 + 0.1*rng.Float64()
		for i := range w {
			w[i] = 0.1 * rng.NormFloat64()
		}
		events := 20 + rng.IntN(61)
		for range events {
			shopContext(rng, x)
			p := base
			for i, xi := range x {
				p += w[i] * xi
			}
			r := 0.0
			if rng.Float64() < p {
				r = 1
			}
			if err := arm.Update(x, r); err != nil {
				b.Fatal(err)
			}
		}
		params, err := arm.Solve()
		if err != nil {
			b.Fatal(err)
		}
		m.ids[a] = fmt.Sprintf("sku%d", a)
		m.params[a] = params
		arms[a] = arm
		m.fetch[a] = c.B().Hmget().Key(store.ArmKey(name, m.ids[a])).Field("theta", "ainv").Build().Pin()
	}
	trained := time.Now()
	for lo := 0; lo < n; lo += store.DefaultBlock {
		hi := min(lo+store.DefaultBlock, n)
		batch := make([]store.ArmWrite, 0, hi-lo)
		for a := lo; a < hi; a++ {
			batch = append(batch, store.ArmWrite{ID: m.ids[a], Arm: arms[a], Params: m.params[a]})
		}
		w := store.Write{Model: name, Features: shopFeatures, Groups: shopGroups, Lambda: linucb.DefaultLambda, Arms: batch}
		if _, err := w.Apply(ctx, c); err != nil {
			b.Fatalf("write arms %d..%d of %s: %v", lo, hi-1, name, err)
		}
	}
	written := time.Now()
	meta, err := store.ReadMeta(ctx, c, name)
	if err != nil {
		b.Fatal(err)
	}
	if meta.Arms != n || meta.Dim != shopDim {
		b.Fatalf("model %s has %d arms of dimension %d, want %d of %d", name, meta.Arms, meta.Dim, n, shopDim)
	}
	fmt.Printf("# setup arms=%d: train %v, write %v (%d calls of <= %d arms), total %v\n",
		n, trained.Sub(start).Round(time.Millisecond), written.Sub(trained).Round(time.Millisecond),
		(n+store.DefaultBlock-1)/store.DefaultBlock, store.DefaultBlock, time.Since(start).Round(time.Millisecond))
	return m
}

// reference is the Go ranking of the given arms (all arms if idx is nil),
// ties in the order given, as the script ranks them.
func (m *benchModel) reference(x []float64, idx []int) []store.Item {
	if idx == nil {
		idx = make([]int, len(m.ids))
		for i := range idx {
			idx[i] = i
		}
	}
	params := make([]linucb.Params, len(idx))
	for i, a := range idx {
		params[i] = m.params[a]
	}
	var out []store.Item
	for _, r := range linucb.Rank(x, params, benchAlpha, benchK) {
		out = append(out, store.Item{ID: m.ids[idx[r.Index]], Score: r.Score})
	}
	return out
}

// clientRecommend is the client-side path: one pipelined round trip of the
// given HMGET theta ainv commands, every arm scored in Go, the top k kept
// (ties in the order given, like the script).
func clientRecommend(ctx context.Context, c rueidis.Client, cmds []rueidis.Completed, ids []string, x []float64, k int, alpha float64) ([]store.Item, error) {
	d := len(x)
	p := linucb.Params{Theta: make([]float64, d), AInv: make([]float64, d*d)}
	top := make([]store.Item, 0, k)
	for i, res := range c.DoMulti(ctx, cmds...) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("fetch arm %s: %w", ids[i], err)
		}
		if len(vals) != 2 {
			return nil, fmt.Errorf("fetch arm %s: %d values", ids[i], len(vals))
		}
		theta, err1 := vals[0].ToString()
		ainv, err2 := vals[1].ToString()
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("arm %s is missing theta or ainv", ids[i])
		}
		if !decodeFloats(p.Theta, theta) || !decodeFloats(p.AInv, ainv) {
			return nil, fmt.Errorf("arm %s: theta of %d bytes, ainv of %d bytes for d=%d", ids[i], len(theta), len(ainv), d)
		}
		top = offerTop(top, k, store.Item{ID: ids[i], Score: linucb.Score(x, p, alpha)})
	}
	return top, nil
}

// decodeFloats decodes the little-endian doubles of s into dst, without
// allocating; it reports whether s has exactly len(dst) of them.
func decodeFloats(dst []float64, s string) bool {
	if len(s) != 8*len(dst) {
		return false
	}
	for i := range dst {
		o := 8 * i
		_ = s[o+7]
		u := uint64(s[o]) | uint64(s[o+1])<<8 | uint64(s[o+2])<<16 | uint64(s[o+3])<<24 |
			uint64(s[o+4])<<32 | uint64(s[o+5])<<40 | uint64(s[o+6])<<48 | uint64(s[o+7])<<56
		dst[i] = math.Float64frombits(u)
	}
	return true
}

// offerTop inserts it into top (best first, at most k) if it beats the
// last; equal scores keep their order of arrival.
func offerTop(top []store.Item, k int, it store.Item) []store.Item {
	m := len(top)
	if m == k {
		if !(it.Score > top[m-1].Score) {
			return top
		}
		m--
	} else {
		top = append(top, store.Item{})
	}
	for m > 0 && top[m-1].Score < it.Score {
		top[m] = top[m-1]
		m--
	}
	top[m] = it
	return top
}

func checkItems(b *testing.B, what string, got, want []store.Item) {
	b.Helper()
	if len(got) != benchK || len(want) != benchK {
		b.Fatalf("%s: %d items (reference %d), want %d", what, len(got), len(want), benchK)
	}
	for i := range got {
		scale := math.Max(1e-300, math.Max(math.Abs(got[i].Score), math.Abs(want[i].Score)))
		if got[i].ID != want[i].ID || math.Abs(got[i].Score-want[i].Score) > 1e-9*scale {
			b.Fatalf("%s: item %d = %v, want %v\ngot  %v\nwant %v", what, i, got[i], want[i], got, want)
		}
	}
}

// op is one serving call for the i-th request; it must be safe for
// concurrent use.
type op func(ctx context.Context, i int) error

// modes runs f as clients=1 (latency percentiles) and clients=16 (throughput).
func modes(b *testing.B, c rueidis.Client, f op) {
	b.Run("clients=1", func(b *testing.B) { oneClient(b, c, f) })
	b.Run(fmt.Sprintf("clients=%d", saturatedClients), func(b *testing.B) { saturated(b, f) })
}

// oneClient calls f b.N times in sequence and reports the p50 and p99 of the
// single-call latencies. Each call is paired with a PING sent just before
// it, so the ratio x-ping (p50 of f over p50 of PING) compares the two under
// the same machine conditions; this VM's loopback latency drifts by a factor
// of several within minutes. server-us is the Redis CPU time per call from
// INFO commandstats (PING, INFO and CONFIG excluded): 1e6/server-us bounds
// the throughput of one Redis.
func oneClient(b *testing.B, c rueidis.Client, f op) {
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	ping := make([]time.Duration, b.N)
	if err := c.Do(ctx, c.B().ConfigResetstat().Build()).Error(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := f(ctx, i); err != nil {
			b.Fatal(err)
		}
		lat[i], ping[i] = time.Since(t1), t1.Sub(t0)
	}
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(ping)
	b.ReportMetric(micros(percentile(lat, 0.50)), "p50-us")
	b.ReportMetric(micros(percentile(lat, 0.99)), "p99-us")
	b.ReportMetric(micros(percentile(ping, 0.50)), "ping-p50-us")
	b.ReportMetric(float64(percentile(lat, 0.50))/float64(percentile(ping, 0.50)), "x-ping")
	b.ReportMetric(serverMicros(b, c)/float64(b.N), "server-us")
}

// serverMicros sums usec over INFO commandstats, less PING, INFO and CONFIG.
// Commands that a script calls are counted both on their own and inside the
// script's time, so when scripts ran only the script commands count.
func serverMicros(b *testing.B, c rueidis.Client) float64 {
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	var all, scripts float64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "ping" || name == "info" || strings.HasPrefix(name, "config") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				f, _ := strconv.ParseFloat(v, 64)
				all += f
				if strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "fcall") {
					scripts += f
				}
			}
		}
	}
	if scripts > 0 {
		return scripts
	}
	return all
}

// percentile returns the nearest-rank p-quantile of the sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// saturated calls f b.N times from saturatedClients goroutines (rounded up
// to a multiple of GOMAXPROCS) sharing one client, and reports the
// throughput.
func saturated(b *testing.B, f op) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((saturatedClients + procs - 1) / procs)
	var worker atomic.Int64
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := int(worker.Add(1)) * 61 // each goroutine starts at another context
		for pb.Next() {
			if err := f(ctx, i); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
}

// BenchmarkServing measures the serving paths against one redis-server; see
// the comment at the top of this file.
func BenchmarkServing(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	if err := store.Load(ctx, c); err != nil {
		b.Fatal(err)
	}
	contexts := shopContexts(rand.New(rand.NewPCG(1, 15)), benchContexts)
	for _, x := range contexts {
		cnt := 0
		for _, v := range x {
			if v != 0 {
				cnt++
			}
		}
		if cnt != 7 {
			b.Fatalf("context %v has %d non-zero entries, want 7", x, cnt)
		}
	}
	ctxAt := func(i int) []float64 { return contexts[i%len(contexts)] }

	b.Run("op=ping", func(b *testing.B) {
		modes(b, c, func(ctx context.Context, _ int) error {
			s, err := c.Do(ctx, c.B().Ping().Build()).ToString()
			if err == nil && s != "PONG" {
				err = fmt.Errorf("PING replied %q", s)
			}
			return err
		})
	})

	b.Run("op=evalsha-return1", func(b *testing.B) {
		one := rueidis.NewLuaScript("return 1")
		if v, err := one.Exec(ctx, c, nil, nil).AsInt64(); err != nil || v != 1 {
			b.Fatalf("return 1 script: %v, %v", v, err)
		}
		modes(b, c, func(ctx context.Context, _ int) error {
			v, err := one.Exec(ctx, c, nil, nil).AsInt64()
			if err == nil && v != 1 {
				err = fmt.Errorf("return 1 script returned %d", v)
			}
			return err
		})
	})

	for _, n := range []int{50, 200, 2000, 20000} {
		b.Run(fmt.Sprintf("arms=%d", n), func(b *testing.B) {
			m := buildShopModel(b, c, fmt.Sprintf("shop%d", n), n, 42)

			// Correctness, once: every path agrees with the Go reference.
			for i := range 3 {
				x := ctxAt(i)
				q := store.Query{K: benchK, Alpha: benchAlpha, Context: x}
				want := m.reference(x, nil)
				got, err := store.Recommend(ctx, c, m.name, q)
				if err != nil {
					b.Fatal(err)
				}
				checkItems(b, "evalsha", got, want)
				if got, err = store.RecommendFCall(ctx, c, m.name, q); err != nil {
					b.Fatal(err)
				}
				checkItems(b, "fcall_ro", got, want)
				if got, err = clientRecommend(ctx, c, m.fetch, m.ids, x, benchK, benchAlpha); err != nil {
					b.Fatal(err)
				}
				checkItems(b, "client-pipeline", got, want)
			}

			recommend := func(q func(i int) store.Query) op {
				return func(ctx context.Context, i int) error {
					items, err := store.Recommend(ctx, c, m.name, q(i))
					if err == nil && len(items) != benchK {
						err = fmt.Errorf("evalsha returned %d items, want %d", len(items), benchK)
					}
					return err
				}
			}
			fcall := func(q func(i int) store.Query) op {
				return func(ctx context.Context, i int) error {
					items, err := store.RecommendFCall(ctx, c, m.name, q(i))
					if err == nil && len(items) != benchK {
						err = fmt.Errorf("fcall_ro returned %d items, want %d", len(items), benchK)
					}
					return err
				}
			}

			whole := func(i int) store.Query {
				return store.Query{K: benchK, Alpha: benchAlpha, Context: ctxAt(i)}
			}
			b.Run("op=evalsha", func(b *testing.B) { modes(b, c, recommend(whole)) })
			b.Run("op=fcall_ro", func(b *testing.B) { modes(b, c, fcall(whole)) })
			b.Run("op=client-pipeline", func(b *testing.B) {
				modes(b, c, func(ctx context.Context, i int) error {
					items, err := clientRecommend(ctx, c, m.fetch, m.ids, ctxAt(i), benchK, benchAlpha)
					if err == nil && len(items) != benchK {
						err = fmt.Errorf("client-pipeline returned %d items, want %d", len(items), benchK)
					}
					return err
				})
			})

			if n != 20000 {
				return
			}
			// Candidate lists: benchCandidates distinct products per request,
			// drawn from the whole catalogue; compare with arms=50.
			b.Run(fmt.Sprintf("cands=%d", benchCandidates), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(7, uint64(n)))
				lists := make([][]int, len(contexts))
				names := make([][]string, len(contexts))
				for i := range lists {
					lists[i] = rng.Perm(n)[:benchCandidates]
					for _, a := range lists[i] {
						names[i] = append(names[i], m.ids[a])
					}
				}
				cands := func(i int) store.Query {
					return store.Query{K: benchK, Alpha: benchAlpha, Context: ctxAt(i), Candidates: names[i%len(names)]}
				}
				clientCands := func(ctx context.Context, i int) ([]store.Item, error) {
					list := lists[i%len(lists)]
					cmds := make([]rueidis.Completed, len(list))
					for j, a := range list {
						cmds[j] = m.fetch[a]
					}
					return clientRecommend(ctx, c, cmds, names[i%len(names)], ctxAt(i), benchK, benchAlpha)
				}
				for i := range 3 {
					want := m.reference(ctxAt(i), lists[i])
					got, err := store.Recommend(ctx, c, m.name, cands(i))
					if err != nil {
						b.Fatal(err)
					}
					checkItems(b, "evalsha candidates", got, want)
					if got, err = store.RecommendFCall(ctx, c, m.name, cands(i)); err != nil {
						b.Fatal(err)
					}
					checkItems(b, "fcall_ro candidates", got, want)
					if got, err = clientCands(ctx, i); err != nil {
						b.Fatal(err)
					}
					checkItems(b, "client-pipeline candidates", got, want)
				}
				b.Run("op=evalsha", func(b *testing.B) { modes(b, c, recommend(cands)) })
				b.Run("op=fcall_ro", func(b *testing.B) { modes(b, c, fcall(cands)) })
				b.Run("op=client-pipeline", func(b *testing.B) {
					modes(b, c, func(ctx context.Context, i int) error {
						items, err := clientCands(ctx, i)
						if err == nil && len(items) != benchK {
							err = fmt.Errorf("client-pipeline returned %d items, want %d", len(items), benchK)
						}
						return err
					})
				})
			})
		})
	}
}
