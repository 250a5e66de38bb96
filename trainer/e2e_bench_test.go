package trainer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/topic"
)

// BenchmarkTrainerEndToEnd measures, against a real Kafka broker
// (REDBANDIT_TEST_KAFKA, e.g. from `make kafka-up`) and a real redis-server,
// on a pre-filled topic of 1,000,000 events (d = 15, 200 products, Avro, 6
// partitions; the topic and its dead-letter topic created beforehand):
//
//	raw-ev/s      a franz-go consumer-group member that does nothing with
//	              the records (group join included, as for the trainer),
//	              reading the whole topic before the trainers run (after a
//	              pass that is not measured, to warm the broker up)
//	raw-after-ev/s  the same, after them
//	trainer-ev/s  a trainer at the default flush interval (5 s), from its
//	              start until its stored offsets reach the end of every
//	              partition: it folds the backlog and writes it in one
//	              catch-up flush
//	trainer/raw   the mean time of the two raw passes over the trainer's
//	              time (target: ≥ 0.7)
//	ev/s/core     events per second of that trainer's own CPU time
//	trainer-100ms-ev/s, trainer-100ms/raw  the same with a flush every
//	              100 ms (about ten writes of all 200 products on the way)
//	raw-machine-us/ev, trainer-machine-us/ev  CPU time of the whole machine
//	              (broker and Redis included) per event, from /proc/stat
//	fresh-p50-ms, fresh-p99-ms  from a produce acknowledged to the change
//	              visible through EVALSHA, at the default 5 s flush interval
//
// Each trainer writes a model of its own through a Redis client of its own.
// The passes run under pprof labels, so a -cpuprofile splits by phase
// (go tool pprof -tagfocus phase=trainer).
//
// Run it once: go test ./trainer -run '^$' -bench TrainerEndToEnd -benchtime 1x
func BenchmarkTrainerEndToEnd(b *testing.B) {
	addr := os.Getenv(realKafkaEnv)
	if addr == "" {
		b.Skip("needs a real Kafka broker: REDBANDIT_TEST_KAFKA=host:port")
	}
	const d, products, n, partitions = 15, 200, 1_000_000, 6
	ctx := context.Background()
	brokers := strings.Split(addr, ",")
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	if err := topic.Ensure(ctx, brokers, partitions, name, name+".dlq"); err != nil {
		b.Fatal(err)
	}
	srv := redistest.Start(b)
	c := srv.Client()
	history := csvOf(genEvents(1, 1000, d, products), d)
	codec, _ := event.NewCodec(d)

	// Pre-fill the topic.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(name), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	start := time.Now()
	for off := 0; off < n; off += 50000 {
		evs := genEvents(uint64(10+off), 50000, d, products)
		recs := make([]*kgo.Record, len(evs))
		for i, ev := range evs {
			recs[i] = avroRecord(b, codec, ev)
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("pre-filled %d events in %v", n, time.Since(start).Round(time.Millisecond))

	// The raw consume rate: a consumer-group member like the trainer (same
	// balancer, so the same join), doing nothing with the records.
	rawPass := func(group string) (secs, machine float64) {
		raw, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.ConsumerGroup(group), kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.DisableAutoCommit())
		if err != nil {
			b.Fatal(err)
		}
		defer raw.Close()
		m0 := machineCPU()
		start := time.Now()
		var first time.Duration
		for got := 0; got < n; {
			fs := raw.PollFetches(ctx)
			if errs := fs.Errors(); len(errs) > 0 {
				b.Fatal(errs[0].Err)
			}
			if got == 0 {
				first = time.Since(start)
			}
			got += fs.NumRecords()
		}
		b.Logf("raw: first records at %v, %d ms in all", first.Round(time.Millisecond), time.Since(start).Milliseconds())
		return time.Since(start).Seconds(), machineCPU() - m0
	}
	// A first pass, not measured, warms the broker up: a freshly started
	// one serves its first pass at half speed or less (its JIT), which
	// would flatter the ratio.
	rawPass(name + "-raw-warm-up")
	b.ResetTimer()
	var rawSecs, rawAfter, rawM0, rawM1 float64
	pprof.Do(ctx, pprof.Labels("phase", "raw"), func(context.Context) { rawSecs, rawM0 = rawPass(name + "-raw-before") })

	// The trainer, once at the default flush interval (the backlog reaches
	// Redis in one catch-up flush) and once flushing every 100 ms, each
	// into a fresh model with its own Redis client, like a trainer process.
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, name)
	if err != nil {
		b.Fatal(err)
	}
	type pass struct{ secs, cpu, machine float64 }
	trainPass := func(model string, interval time.Duration) pass {
		if _, err := bootstrap.RunReader(ctx, c, bytes.NewReader(history), "history", bootstrap.Config{Model: model}); err != nil {
			b.Fatal(err)
		}
		caughtUp := func() bool {
			ok := true
			ends.Each(func(o kadm.ListedOffset) {
				v, err := c.Do(ctx, c.B().Hget().Key(store.RootKey(model)).Field(store.OffsetField(name, o.Partition)).Build()).ToString()
				if err != nil || v != strconv.FormatInt(o.Offset, 10) {
					ok = false
				}
			})
			return ok
		}
		cfg := Config{Brokers: brokers, Topic: name, Group: name + "-" + model, Model: model, Redis: srv.Client(),
			FlushInterval: interval, Logger: slog.New(slog.DiscardHandler)}
		var flushes int
		cfg.OnFlush = func(FlushStats) { flushes++ }
		run, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		cpu0, m0 := cpuSeconds(), machineCPU()
		start := time.Now()
		go pprof.Do(run, pprof.Labels("phase", "trainer"), func(ctx context.Context) { done <- Run(ctx, cfg) })
		for !caughtUp() {
			time.Sleep(10 * time.Millisecond)
		}
		p := pass{time.Since(start).Seconds(), cpuSeconds() - cpu0, machineCPU() - m0}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.Logf("trainer, %v flush interval: caught up in %.0f ms, %d flushes", interval, p.secs*1e3, flushes)
		return p
	}
	def := trainPass(testModel, DefaultFlushInterval)
	often := trainPass(testModel+"-100ms", 100*time.Millisecond)
	pprof.Do(ctx, pprof.Labels("phase", "raw"), func(context.Context) { rawAfter, rawM1 = rawPass(name + "-raw-after") })
	b.StopTimer()
	rawMean := (rawSecs + rawAfter) / 2
	b.ReportMetric(n/rawSecs, "raw-ev/s")
	b.ReportMetric(n/rawAfter, "raw-after-ev/s")
	b.ReportMetric(n/def.secs, "trainer-ev/s")
	b.ReportMetric(rawMean/def.secs, "trainer/raw")
	b.ReportMetric(n/def.cpu, "ev/s/core")
	b.ReportMetric(n/often.secs, "trainer-100ms-ev/s")
	b.ReportMetric(rawMean/often.secs, "trainer-100ms/raw")
	b.ReportMetric((rawM0+rawM1)/2/n*1e6, "raw-machine-us/ev")
	b.ReportMetric(def.machine/n*1e6, "trainer-machine-us/ev")

	// Freshness at the default flush interval: one event for a new product
	// every 100 ms; each is timed until EVALSHA scores that product
	// differently from a fresh arm.
	cfg := Config{Brokers: brokers, Topic: name, Group: name + "-fresh", Model: testModel, Redis: c,
		Logger: slog.New(slog.DiscardHandler)}
	run, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(run, cfg) }()
	time.Sleep(3 * time.Second) // let it join and catch up (nothing new yet)
	x := make([]float64, d)
	x[0], x[3], x[7] = 0.5, 1, 1
	prior, err := store.Recommend(ctx, c, testModel, store.Query{K: 1, Alpha: 0.1, Context: x, Candidates: []string{"never-seen"}})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		id := fmt.Sprintf("fresh-%d", i)
		rec := avroRecord(b, codec, event.Event{EventID: id, ProductID: id, Reward: 1, ContextVector: x, Timestamp: time.Now().UnixMilli()})
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(acked) < 30*time.Second {
				items, err := store.Recommend(ctx, c, testModel, store.Query{K: 1, Alpha: 0.1, Context: x, Candidates: []string{id}})
				if err == nil && len(items) == 1 && items[0].Score != prior[0].Score {
					mu.Lock()
					lat = append(lat, time.Since(acked))
					mu.Unlock()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if len(lat) != 60 {
		b.Fatalf("%d of 60 events became visible within 30 s", len(lat))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "fresh-p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "fresh-p99-ms")
}

// cpuSeconds is the CPU time (user + system) of this process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// machineCPU is the CPU time (user, system, irq, softirq) all processes
// of the machine have used so far, from /proc/stat; 0 where it is missing.
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

// BenchmarkMemoryPerProduct measures the trainer's memory per product: the
// unflushed sums it keeps for each product with events since the last flush
// (d = 15), by folding one event for each of 20,000 products.
func BenchmarkMemoryPerProduct(b *testing.B) {
	const d, products = 15, 20000
	codec, _ := event.NewCodec(d)
	recs := make([]*kgo.Record, products)
	for i := range recs {
		ev := genEvents(uint64(i), 1, d, 1)[0]
		ev.ProductID = fmt.Sprintf("p%05d", i)
		recs[i] = avroRecord(b, codec, ev)
		recs[i].Topic = testTopic
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		m := &member{cfg: Config{Topic: testTopic, MaxDirty: 1 << 30}, log: slog.New(slog.DiscardHandler),
			meta: store.Meta{Dim: d, Lambda: 1}, codec: codec, parts: map[int32]*partition{}}
		st, _ := newPartition("")
		m.parts[0] = st
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for j, r := range recs {
			r.Offset = int64(j)
			m.process(ctx, r)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if len(st.deltas) != products {
			b.Fatalf("%d products folded", len(st.deltas))
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/products, "bytes/product")
		runtime.KeepAlive(m)
	}
}
