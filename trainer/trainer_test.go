package trainer

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/tools/produce"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/event"
)

// TestTrainerFoldsLog produces a seeded log with the producer (Avro) and
// runs one trainer, after bootstrapping a history as --bootstrap does,
// until it has caught up.
func TestTrainerFoldsLog(t *testing.T) {
	const d = 4
	e := newEnv(t, 6)
	want := newRefModel(d)
	history := genEvents(1, 500, d, 50)
	path := t.TempDir() + "/history.csv"
	if err := writeFile(path, csvOf(history, d)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range history {
		want.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	stream := genEvents(2, 20000, d, 50)
	res, err := produce.RunReader(context.Background(), bytes.NewReader(csvOf(stream, d)),
		produce.Config{Brokers: e.brokers, Topic: e.topic, Format: produce.FormatAvro})
	if err != nil || res.Produced != int64(len(stream)) {
		t.Fatalf("produced %d of %d: %v", res.Produced, len(stream), err)
	}
	for _, ev := range stream {
		want.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	var r runner
	r.t = t
	cfg := e.config()
	// The command (cmd/redbandit) bootstraps before it runs the trainer.
	boot := func(again bool) {
		t.Helper()
		res, err := bootstrap.Run(context.Background(), e.redis, path, bootstrap.Config{Model: testModel})
		if err != nil || res.AlreadyApplied != again || !again && res.Events != int64(len(history)) {
			t.Fatalf("bootstrap (again %v): %+v, %v", again, res, err)
		}
	}
	boot(false)
	var flushes atomic.Int64
	var last atomic.Pointer[FlushStats]
	cfg.OnFlush = func(st FlushStats) { flushes.Add(1); last.Store(&st) }
	start := time.Now()
	stop := r.start(cfg)
	e.waitCaughtUp(60 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
	if flushes.Load() < 2 {
		t.Errorf("%d flushes, want several (MaxDirty 20)", flushes.Load())
	}
	// The last flush's statistics are in the root for dashboards.
	sum, err := store.ReadSummary(context.Background(), e.redis, testModel, e.topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := last.Load()
	if at := sum.FlushAtMS; at < start.UnixMilli() || at > time.Now().UnixMilli() || sum.FlushArms == nil || *sum.FlushArms != int64(st.Products) ||
		sum.FlushEvents == nil || *sum.FlushEvents != st.Events || sum.FlushMS == nil {
		t.Errorf("flush statistics in the root: %+v; the last flush: %+v", sum, st)
	}
	// A restart with the same bootstrap file folds nothing twice.
	boot(true)
	stop = r.start(cfg)
	time.Sleep(500 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
}

// TestTrainerCatchUpFlush checks the catch-up flush: a trainer whose
// interval is an hour writes a backlog as soon as it has folded it, and
// then, keeping up with the topic, waits for the interval again.
func TestTrainerCatchUpFlush(t *testing.T) {
	const d = 4
	e := newEnv(t, 2)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec := newCodec(t, d)
	stream := genEvents(3, 4000, d, 20)
	for off := 0; off < len(stream); off += 200 { // many batches
		recs := make([]*kgo.Record, 0, 200)
		for _, ev := range stream[off : off+200] {
			recs = append(recs, avroRecord(t, codec, ev))
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
		e.produce(recs...)
	}
	var r runner
	r.t = t
	cfg := e.config()
	cfg.FlushInterval, cfg.MaxDirty = time.Hour, 1<<30
	// One batch per partition and fetch, so the backlog takes many polls.
	cfg.KafkaOpts = append(cfg.KafkaOpts, kgo.FetchMaxPartitionBytes(4<<10))
	var flushes atomic.Int64
	cfg.OnFlush = func(FlushStats) { flushes.Add(1) }
	stop := r.start(cfg)
	e.waitCaughtUp(30 * time.Second)
	// OnFlush runs when the poll loop takes the write's outcome, just after
	// the offsets are visible.
	for deadline := time.Now().Add(5 * time.Second); flushes.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := flushes.Load(); got != 1 {
		t.Errorf("%d flushes to catch up, want 1", got)
	}
	e.check(want)

	// Caught up: one more event waits for the interval (here: the stop).
	root := store.RootKey(testModel)
	before := e.hgetall(root)
	ev := genEvents(4, 1, d, 20)[0]
	e.produce(avroRecord(t, codec, ev))
	want.add(ev.ProductID, ev.ContextVector, ev.Reward)
	time.Sleep(time.Second)
	if got := flushes.Load(); got != 1 {
		t.Errorf("%d flushes after one more event, want still 1", got)
	}
	if after := e.hgetall(root); !maps.Equal(after, before) {
		t.Errorf("the model root changed without a flush: %v, then %v", before, after)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := flushes.Load(); got != 2 {
		t.Errorf("%d flushes after the stop, want 2", got)
	}
	e.check(want)
}

// TestTrainerDeadLetters mixes malformed events into JSON and Avro ones:
// each reaches the dead-letter topic with its reason and source, and the
// model holds the valid events only.
func TestTrainerDeadLetters(t *testing.T) {
	const d = 3
	e := newEnv(t, 6)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec := newCodec(t, d)
	rng := rand.New(rand.NewPCG(3, 3))
	var recs []*kgo.Record
	wantReasons := map[string]int{}
	bad := func(key string, v []byte, reason string) {
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{{Key: "want", Value: []byte(reason)}}})
		wantReasons[reason]++
	}
	for i, ev := range genEvents(4, 3000, d, 20) {
		switch rng.IntN(10) {
		case 0:
			bad(ev.ProductID, []byte("not an event"), "undecodable")
		case 1:
			ev.ContextVector = append(ev.ContextVector, 1)
			bad(ev.ProductID, avroRecord(t, codec, ev).Value, "wrong-dimension")
		case 2:
			// NaN, or finite but so large that A would overflow and no
			// later flush of the product could solve it.
			ev.ContextVector[i%d] = []float64{math.NaN(), 1e200}[i%2]
			bad(ev.ProductID, avroRecord(t, codec, ev).Value, "non-finite")
		case 3:
			j, _ := event.AppendJSON(nil, ev)
			bad(ev.ProductID, bytes.Replace(j, []byte(`"reward":`), []byte(`"reward":1.5,"x":`), 1), "bad-reward")
		case 4:
			ev.ProductID = ""
			j, _ := event.AppendJSON(nil, ev)
			bad("", j, "empty-product-id")
		case 5, 6:
			ev.Reward = math.Round(rng.Float64()*100) / 100 // fractional: JSON only
			j, _ := event.AppendJSON(nil, ev)
			recs = append(recs, &kgo.Record{Key: []byte(ev.ProductID), Value: j})
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		default:
			recs = append(recs, avroRecord(t, codec, ev))
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
	}
	e.produce(recs...)
	var r runner
	r.t = t
	cfg := e.config()
	var invalid atomic.Int64
	cfg.OnFlush = func(s FlushStats) { invalid.Add(s.Invalid) }
	stop := r.start(cfg)
	e.waitCaughtUp(60 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)

	// Read the dead-letter topic back and match each letter to its source.
	total := 0
	for _, n := range wantReasons {
		total += n
	}
	if invalid.Load() != int64(total) {
		t.Errorf("flushes counted %d invalid events, want %d", invalid.Load(), total)
	}
	if meta := e.mustMeta(); meta.Invalid != int64(total) {
		t.Errorf("the model counts %d dead-lettered events, want %d", meta.Invalid, total)
	}
	letters := consumeAll(t, e.brokers, e.topic+DefaultDLQSuffix, total)
	src := consumeAll(t, e.brokers, e.topic, len(recs))
	byPos := map[[2]int64]*kgo.Record{}
	for _, s := range src {
		byPos[[2]int64{int64(s.Partition), s.Offset}] = s
	}
	gotReasons := map[string]int{}
	for _, l := range letters {
		h := headers(l)
		gotReasons[h["reason"]]++
		p, o := atoi(h["source-partition"]), atoi(h["source-offset"])
		s := byPos[[2]int64{p, o}]
		if s == nil || h["source-topic"] != e.topic || headers(s)["want"] != h["reason"] || !bytes.Equal(s.Value, l.Value) || h["error"] == "" {
			t.Fatalf("dead letter %v does not match its source record %v", h, s)
		}
	}
	for reason, n := range wantReasons {
		if gotReasons[reason] != n {
			t.Errorf("%d dead letters with reason %s, want %d (all: %v)", gotReasons[reason], reason, n, gotReasons)
		}
	}
	if len(letters) != total {
		t.Errorf("%d dead letters, want %d", len(letters), total)
	}
}

// TestTrainerRestarts stops the trainer at random points while it consumes,
// several times, some of them inside a flush, and restarts it.
func TestTrainerRestarts(t *testing.T) {
	testRestarts(t, 0, 20000, 50)
}

// TestTrainerForgetsOnce is TestTrainerRestarts on a model with a
// half-life of 40 events (about 200 events per product): every event
// fades its product's evidence exactly once, through the cancelled writes
// and the restarts that fold events again, as the offline reference fades
// it once per event in log order.
func TestTrainerForgetsOnce(t *testing.T) {
	testRestarts(t, 40, 6000, 30)
}

// testRestarts folds a history and a stream of events over products
// products while the trainer is restarted and its writes cancelled, and
// checks the model against the offline reference with the half-life.
func testRestarts(t *testing.T, halfLife float64, events, products int) {
	const d = 4
	e := newEnv(t, 6)
	want := newRefModel(d)
	want.halfLife = halfLife
	e.createModel(d, genEvents(5, 200, d, products), want)
	if got := e.mustMeta().HalfLife; got != halfLife {
		t.Fatalf("model half-life %v, want %v", got, halfLife)
	}
	codec, _ := event.NewCodec(d)
	stream := genEvents(6, events, d, products)
	var r runner
	r.t = t
	rng := rand.New(rand.NewPCG(6, 6))
	// Produce in 8 slices while the trainer restarts.
	slices := 8
	for i := 0; i < slices; i++ {
		part := stream[i*len(stream)/slices : (i+1)*len(stream)/slices]
		recs := make([]*kgo.Record, len(part))
		for j, ev := range part {
			recs[j] = avroRecord(t, codec, ev)
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
		e.produce(recs...)
		cfg := e.config()
		cfg.MaxDirty = 5 + rng.IntN(40)
		cfg.FlushInterval = time.Duration(20+rng.IntN(200)) * time.Millisecond
		if i%2 == 1 {
			// Cancel inside the k-th write attempt, before the script runs.
			k := 1 + rng.IntN(2)
			ctx, cancel := context.WithCancel(context.Background())
			cfg.beforeApply = func(int) {
				if k--; k == 0 {
					cancel()
				}
			}
			done := make(chan error, 1)
			go func() { done <- Run(ctx, cfg) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second): // fewer flushes than k: stop it anyway
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		stop := r.start(cfg)
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	stop := r.start(e.config())
	e.waitCaughtUp(60 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
}

// TestTrainerTwoMembers runs two members of one group over 6 partitions
// while events arrive, and stops one of them mid-stream.
func TestTrainerTwoMembers(t *testing.T) {
	const d = 4
	e := newEnv(t, 6)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec, _ := event.NewCodec(d)
	stream := genEvents(7, 20000, d, 50)
	var r runner
	r.t = t
	cfgA, cfgB := e.config(), e.config()
	var flushedA, flushedB atomic.Int64
	cfgA.OnFlush = func(s FlushStats) { flushedA.Add(s.Events) }
	cfgB.OnFlush = func(s FlushStats) { flushedB.Add(s.Events) }
	stopA := r.start(cfgA)
	stopB := r.start(cfgB)
	for i := 0; i < 10; i++ {
		part := stream[i*len(stream)/10 : (i+1)*len(stream)/10]
		recs := make([]*kgo.Record, len(part))
		for j, ev := range part {
			recs[j] = avroRecord(t, codec, ev)
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
		e.produce(recs...)
		time.Sleep(300 * time.Millisecond)
		if i == 5 {
			if err := stopB(); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.waitCaughtUp(60 * time.Second)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
	if flushedA.Load() == 0 || flushedB.Load() == 0 {
		t.Errorf("member A folded %d events and B %d: want both to have worked", flushedA.Load(), flushedB.Load())
	}
	t.Logf("member A folded %d events, B %d", flushedA.Load(), flushedB.Load())
}

// TestTrainerFenced writes a partition's offset behind a running trainer's
// back, as a newer owner would: the trainer's next write must be refused
// and write nothing, and the trainer must resume from the newer offset
// without counting anything twice.
func TestTrainerFenced(t *testing.T) {
	const d = 3
	e := newEnv(t, 1)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec, _ := event.NewCodec(d)
	first, second := genEvents(8, 500, d, 10), genEvents(9, 300, d, 10)
	// The second batch is about other products, so the stale trainer has
	// no cached version of their arms: it reads them (with the batch
	// already folded by the newer owner) and only the offset guard can
	// stop it from folding the batch again.
	for i := range second {
		second[i].ProductID = "q" + second[i].ProductID
	}
	recs := func(evs []event.Event) []*kgo.Record {
		out := make([]*kgo.Record, len(evs))
		for i, ev := range evs {
			out[i] = avroRecord(t, codec, ev)
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
		return out
	}
	e.produce(recs(first)...)
	var r runner
	r.t = t
	cfg := e.config()
	cfg.FlushInterval = 50 * time.Millisecond
	cfg.MaxDirty = 1000
	var fenced atomic.Int64
	cfg.OnFlush = func(s FlushStats) { fenced.Add(int64(len(s.Fenced))) }
	stop := r.start(cfg)
	e.waitCaughtUp(30 * time.Second)

	// The "newer owner" folds the second batch itself and moves the offset.
	ctx := context.Background()
	field := store.OffsetField(e.topic, 0)
	ids := []string{}
	delta := newRefModel(d)
	for _, ev := range second {
		delta.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	for id := range delta.arms {
		ids = append(ids, id)
	}
	meta, err := store.ReadMeta(ctx, e.redis, testModel)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := store.ReadArms(ctx, e.redis, testModel, d, 1, ids)
	if err != nil {
		t.Fatal(err)
	}
	w := store.Write{Model: testModel, Features: meta.Features, Lambda: 1, Events: int64(len(second)), Rewards: delta.rewards,
		Guards: []store.Guard{{Field: field, Want: "500"}}, Set: []store.Field{{Name: field, Value: "800"}}}
	for _, s := range stored {
		a, b := append([]float64(nil), s.Arm.A()...), append([]float64(nil), s.Arm.B()...)
		dl := delta.arms[s.ID]
		for i := range a {
			a[i] += dl.a[i]
		}
		for i := 0; i < d; i++ {
			a[i*d+i]-- // delta carries its own λI
			b[i] += dl.b[i]
		}
		arm, err := restoreSolve(d, a, b, s.Arm.N()+dl.n, s.Arm.Rewards()+dl.r)
		if err != nil {
			t.Fatal(err)
		}
		arm.Version = s.Version
		arm.ID = s.ID
		w.Arms = append(w.Arms, arm)
	}
	if _, err := w.Apply(ctx, e.redis); err != nil {
		t.Fatal(err)
	}
	versions := armVersions(t, e, ids)

	// Now the events the newer owner folded reach the stale trainer.
	e.produce(recs(second)...)
	deadline := time.Now().Add(5 * time.Second)
	for fenced.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if fenced.Load() == 0 {
		t.Error("the stale trainer's write was never refused")
	}
	time.Sleep(300 * time.Millisecond) // let it flush again if it wrongly would
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
	if got := armVersions(t, e, ids); !equalInts(got, versions) {
		t.Errorf("arm versions moved from %v to %v: the stale write was applied", versions, got)
	}
}

func TestConfigErrors(t *testing.T) {
	if err := Run(context.Background(), Config{}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("empty config: %v", err)
	}
	e := newEnv(t, 1)
	cfg := e.config()
	cfg.Model = "absent"
	if err := Run(context.Background(), cfg); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("missing model: %v", err)
	}
}

// TestTrainerOffsetOutOfRange deletes the events at a partition's stored
// offset (as retention would): the trainer stops with ErrOffsetOutOfRange,
// and with ResetOutOfRange resumes from the oldest event left.
func TestTrainerOffsetOutOfRange(t *testing.T) {
	const d = 2
	e := newEnv(t, 1)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	codec, _ := event.NewCodec(d)
	evs := genEvents(10, 100, d, 5)
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		recs[i] = avroRecord(t, codec, ev)
		if i >= 50 {
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
	}
	e.produce(recs...)
	ctx := context.Background()
	meta := e.mustMeta()
	field := store.OffsetField(e.topic, 0)
	w := store.Write{Model: testModel, Features: meta.Features, Lambda: 1, Set: []store.Field{{Name: field, Value: "10"}}}
	if _, err := w.Apply(ctx, e.redis); err != nil {
		t.Fatal(err)
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: e.topic, Partition: 0, At: 50})
	if res, err := kadm.NewClient(adm).DeleteRecords(ctx, offs); err != nil || res.Error() != nil {
		t.Fatalf("delete records: %v %v", err, res.Error())
	}

	cfg := e.config()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Run(rctx, cfg); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("Run: %v, want ErrOffsetOutOfRange", err)
	}
	if v, _ := e.redis.Do(ctx, e.redis.B().Hget().Key(store.RootKey(testModel)).Field(field).Build()).ToString(); v != "10" {
		t.Fatalf("stored offset moved to %q", v)
	}
	var r runner
	r.t = t
	cfg.ResetOutOfRange = true
	stop := r.start(cfg)
	e.waitCaughtUp(30 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.check(want)
}

// TestTrainerUnsolvableArm damages a stored arm so that it cannot be solved
// (A indefinite, though finite): the trainer's next flush fails, and the
// trainer stops with that error instead of retrying every flush forever;
// the stored offset does not move, so nothing is lost once it is repaired.
func TestTrainerUnsolvableArm(t *testing.T) {
	const d = 2
	e := newEnv(t, 1)
	history := genEvents(11, 40, d, 3)
	e.createModel(d, history, newRefModel(d))
	ctx := context.Background()
	key := store.ArmKey(testModel, history[0].ProductID)
	if err := e.redis.Do(ctx, e.redis.B().Hset().Key(key).FieldValue().FieldValue("a", string(store.AppendFloats(nil, []float64{1, 2, 2, 1}))).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	codec := newCodec(t, d)
	ev := history[0]
	ev.EventID = "after"
	e.produce(avroRecord(t, codec, ev))
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := Run(rctx, e.config()); !errors.Is(err, linucb.ErrNotPositiveDefinite) {
		t.Fatalf("Run: %v, want ErrNotPositiveDefinite", err)
	}
	if v, err := e.redis.Do(ctx, e.redis.B().Hget().Key(store.RootKey(testModel)).Field(store.OffsetField(e.topic, 0)).Build()).ToString(); !rueidis.IsRedisNil(err) {
		t.Fatalf("stored offset %q (%v), want none", v, err)
	}
}
