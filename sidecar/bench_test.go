package sidecar_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/training/decision"
)

// BenchmarkSidecar compares POST /v1/recommend with the direct EVALSHA it
// wraps, against one redis-server, for a 200-product reference-shop model:
//
//	clients=1: p50/p99 of sequential calls, the paths interleaved so all
//	           see the same machine conditions; overhead-us is the
//	           difference of the p50s of http and direct; noop is an HTTP
//	           handler that only answers a constant body: its p50 is the
//	           floor of any HTTP hop on this machine. The lean-* paths do
//	           the same with minimal clients written on a socket (HTTP/1.1
//	           and RESP, one goroutine, no pipelining, as wrk and
//	           redis-benchmark are), so that the clients' own costs (Go's
//	           HTTP client hands each request between goroutines) do not
//	           count: lean-overhead-us is what the sidecar itself adds;
//	           lean-http-log is lean-http with the decision log on
//	           (to an in-process Kafka): log-overhead-us is what the
//	           log adds to the p50
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
	// The same sidecar with the decision log on, producing to an
	// in-process Kafka (whose work then counts against it too).
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(6, decision.DefaultTopic))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	logProd, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.MaxBufferedRecords(sidecar.DefaultDecisionBuffer),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer logProd.Close()
	withLog := sidecar.New(sidecar.Config{Redis: c, Model: "bench", DecisionsTopic: decision.DefaultTopic, DecisionLog: logProd})
	hsLog := httptest.NewServer(withLog.Handler())
	defer hsLog.Close()
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

	sha, err := c.Do(ctx, c.B().ScriptLoad().Script(lua.RecommendSource()).Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	evalsha := func(i int) []string {
		args := []string{"EVALSHA", sha, "1", store.RootKey("bench"), "5", "0.1"}
		for _, v := range xs[i%len(xs)] {
			args = append(args, strconv.FormatFloat(v, 'g', -1, 64))
		}
		return args
	}
	leanDirect := leanRESP(b, srv.Addr, evalsha)
	leanHTTP := leanPost(b, hs.URL, "/v1/recommend", bodies)
	leanNoop := leanPost(b, noop.URL, "/", bodies)
	leanHTTPLog := leanPost(b, hsLog.URL, "/v1/recommend", bodies)

	b.Run("clients=1", func(b *testing.B) {
		lat := map[string][]time.Duration{}
		for i := 0; i < b.N; i++ {
			for _, p := range []struct {
				name string
				f    func(int) error
			}{{"direct", direct}, {"http", viaHTTP}, {"noop", viaNoop},
				{"lean-direct", leanDirect}, {"lean-http", leanHTTP}, {"lean-noop", leanNoop}, {"lean-http-log", leanHTTPLog}} {
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
		b.ReportMetric(p50["lean-http"]-p50["lean-direct"], "lean-overhead-us")
		b.ReportMetric(p50["lean-http-log"]-p50["lean-http"], "log-overhead-us")
	})
	// Sixteen lean connections of each kind, one per parallel goroutine.
	var leanDirects, leanHTTPs []func(int) error
	for range 16 {
		leanDirects = append(leanDirects, leanRESP(b, srv.Addr, evalsha))
		leanHTTPs = append(leanHTTPs, leanPost(b, hs.URL, "/v1/recommend", bodies))
	}
	shared := func(f func(int) error) []func(int) error { return slices.Repeat([]func(int) error{f}, 16) }
	for _, p := range []struct {
		name string
		fs   []func(int) error // one per goroutine
	}{{"direct", shared(direct)}, {"http", shared(viaHTTP)}, {"lean-direct", leanDirects}, {"lean-http", leanHTTPs}} {
		b.Run("clients=16/"+p.name, func(b *testing.B) {
			b.SetParallelism(8) // × GOMAXPROCS (2 here): 16 goroutines
			var n atomic.Int64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				g := int(n.Add(1))
				f, i := p.fs[(g-1)%len(p.fs)], g*97
				for pb.Next() {
					if err := f(i); err != nil {
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

// leanDial opens a connection for a lean client, closed with the benchmark.
func leanDial(b *testing.B, addr string) (net.Conn, *bufio.Reader) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn, bufio.NewReader(conn)
}

// leanPost returns a minimal HTTP/1.1 client of one keep-alive connection:
// call i posts bodies[i] to path and reads the reply (Content-Length
// framing only, which the servers here use), all on the calling goroutine.
func leanPost(b *testing.B, url, path string, bodies []string) func(int) error {
	conn, br := leanDial(b, strings.TrimPrefix(url, "http://"))
	var req []byte
	return func(i int) error {
		body := bodies[i%len(bodies)]
		req = append(req[:0], "POST "+path+" HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: "...)
		req = strconv.AppendInt(req, int64(len(body)), 10)
		req = append(append(req, "\r\n\r\n"...), body...)
		if _, err := conn.Write(req); err != nil {
			return err
		}
		status, n := "", -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return err
			}
			if status == "" {
				status = string(line)
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := strings.CutPrefix(strings.ToLower(string(line)), "content-length:"); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if !strings.HasPrefix(status, "HTTP/1.1 200") || n < 0 {
			return fmt.Errorf("lean post: %q, content-length %d", status, n)
		}
		_, err := br.Discard(n)
		return err
	}
}

// leanRESP returns a minimal Redis client of one connection: call i sends
// the command args(i) and reads an array reply of bulk strings, all on the
// calling goroutine.
func leanRESP(b *testing.B, addr string, args func(int) []string) func(int) error {
	conn, br := leanDial(b, addr)
	var req []byte
	return func(i int) error {
		a := args(i)
		req = strconv.AppendInt(append(req[:0], '*'), int64(len(a)), 10)
		for _, s := range a {
			req = strconv.AppendInt(append(req, "\r\n$"...), int64(len(s)), 10)
			req = append(append(req, "\r\n"...), s...)
		}
		if _, err := conn.Write(append(req, "\r\n"...)); err != nil {
			return err
		}
		line, err := br.ReadSlice('\n')
		if err != nil || len(line) < 2 || line[0] != '*' {
			return fmt.Errorf("lean resp: %q, %v", line, err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(line[1:])))
		for k := 0; k < n; k++ {
			if line, err = br.ReadSlice('\n'); err != nil || line[0] != '$' {
				return fmt.Errorf("lean resp item: %q, %v", line, err)
			}
			l, _ := strconv.Atoi(strings.TrimSpace(string(line[1:])))
			if _, err := br.Discard(l + 2); err != nil {
				return err
			}
		}
		if n != 10 {
			return fmt.Errorf("lean resp: %d values, want 10", n)
		}
		return nil
	}
}

// BenchmarkLocalFreshness measures how soon a sidecar scoring locally
// (--scoring local, the default 10 ms refresh) serves a trainer's write,
// for reference-shop models of 2,000 and 20,000 products: each iteration
// writes a flush of `flush` products spread over the model (one of them
// now the best for a context by far) and polls the sidecar every 0.2 ms
// until it answers with that product and its new score. p50-ms, p99-ms and
// max-ms are from the end of the write to that answer; fallbacks counts
// the polls the script answered (a copy past --max-staleness). At 20,000
// products such a write holds Redis for about a second (docs/BENCHMARKS.md,
// "Writes and flushes"), during which no refresh can finish: that case
// runs with --max-staleness 5s.
func BenchmarkLocalFreshness(b *testing.B) {
	for _, tc := range []struct {
		products, flush int
		stale           time.Duration
	}{{2000, 20, 0}, {20_000, 100, 5 * time.Second}} {
		b.Run(fmt.Sprintf("products=%d/flush=%d", tc.products, tc.flush), func(b *testing.B) {
			localFreshness(b, tc.products, tc.flush, tc.stale)
		})
	}
}

func localFreshness(b *testing.B, products, flush int, stale time.Duration) {
	srv := redistest.Start(b)
	c := srv.Client()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(19, 20))
	ids := localShop(b, c, "fresh", products, rng)
	url := serve(b, sidecar.Config{Redis: c, Model: "fresh", Scoring: sidecar.ScoringLocal, MaxStaleness: stale})
	sp := spec.Reference()
	x := []float64{0.5, 0.5, 0.5, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0}
	body := `{"context": [0.5,0.5,0.5,1,0,1,0,0,0,0,1,0,0,1,0], "k": 1}`
	postRaw(b, url, "/v1/recommend", body)
	waitFor(b, time.Minute, "the copy loads", func() bool {
		return metric(b, url, `redbandit_sidecar_local_products{model="fresh"}`) == float64(products)
	})
	fallbacks := func() float64 {
		var n float64
		for _, r := range []string{"unloaded", "too_large", "stale", "query"} {
			n += metric(b, url, `redbandit_sidecar_local_fallbacks_total{reason="`+r+`"}`)
		}
		return n
	}
	fallbacks0 := fallbacks()
	vers := map[string]int64{}
	var took []time.Duration
	b.ResetTimer()
	for i := range b.N {
		w := store.Write{Model: "fresh", Features: sp.Names(), Groups: sp.Groups(), Lambda: 1}
		best := ids[rng.IntN(products)]
		picked := map[string]bool{}
		for len(w.Arms) < flush {
			id := best
			if len(w.Arms) > 0 {
				id = ids[rng.IntN(products)]
			}
			if picked[id] {
				continue
			}
			picked[id] = true
			arm := linucb.NewArm(sp.Dim(), 1)
			reward := float64(rng.IntN(2))
			if id == best {
				reward = float64(10 + i) // a new best, with a score never served before
			}
			for range 20 {
				_ = arm.Update(x, reward)
			}
			p, _ := arm.Solve()
			v, ok := vers[id]
			if !ok {
				v = 1
			}
			w.Arms = append(w.Arms, store.ArmWrite{ID: id, Version: v, Arm: arm, Params: p})
		}
		got, err := w.Apply(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		for j, a := range w.Arms {
			vers[a.ID] = got[j]
		}
		// The new best's score, from the Go reference: asking the script
		// now would hold Redis (~7 ms at 20,000 products) while the
		// sidecar refreshes. The script's answer is checked after.
		ref := linucb.Score(x, w.Arms[0].Params, linucb.DefaultAlpha)
		var served sidecar.Item
		for {
			_, reply := postRaw(b, url, "/v1/recommend", body)
			var r struct{ Items []sidecar.Item }
			if err := json.Unmarshal(reply, &r); err != nil || len(r.Items) != 1 {
				b.Fatalf("%s", reply)
			}
			served = r.Items[0]
			if served.ID == best && math.Abs(served.Score-ref) <= 1e-9*math.Abs(ref) {
				break
			}
			if time.Since(written) > 5*time.Second {
				b.Fatalf("not served after 5 s: %s, want %s (score %v)", reply, best, ref)
			}
			time.Sleep(200 * time.Microsecond)
		}
		took = append(took, time.Since(written))
		want, err := store.Recommend(ctx, c, "fresh", store.Query{K: 1, Alpha: linucb.DefaultAlpha, Context: x})
		if err != nil || want[0].ID != best || math.Abs(want[0].Score-served.Score) > 1e-12*math.Abs(served.Score) {
			b.Fatalf("the script answers %v, %v; the sidecar served %v", want, err, served)
		}
	}
	b.StopTimer()
	slices.Sort(took)
	q := func(p float64) float64 {
		return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1e3
	}
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1e3, "max-ms")
	// A request the script answered (the copy stale: the refresh loop
	// starved of CPU for a second) is counted, not hidden.
	b.ReportMetric(fallbacks()-fallbacks0, "fallbacks")
}
