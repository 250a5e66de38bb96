package joiner_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/joiner"
)

const (
	feedbackTopic = "feedback-events"
	dlqTopic      = "feedback-events.dlq"
	t0            = int64(1_000_000_000_000) // record time of the tests' logs, Unix ms
)

// logWriter produces decision-log records with chosen timestamps.
type logWriter struct {
	t     *testing.T
	cl    *kgo.Client
	codec *decision.Codec
	topic string
}

func newLogWriter(t *testing.T, brokers []string, topic string) *logWriter {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	codec, err := decision.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	return &logWriter{t: t, cl: cl, codec: codec, topic: topic}
}

func (w *logWriter) produce(key, typ string, value []byte, ts int64) {
	w.t.Helper()
	r := &kgo.Record{Topic: w.topic, Key: []byte(key), Value: value, Timestamp: time.UnixMilli(ts),
		Headers: []kgo.RecordHeader{{Key: decision.TypeHeader, Value: []byte(typ)}}}
	if err := w.cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
}

// decision logs decision id with the slate products, context x, at ts.
func (w *logWriter) decision(id string, x []float64, ts int64, products ...string) {
	w.t.Helper()
	d := decision.Decision{EventID: id, Model: "m", Context: x, Alpha: 0.1, Policy: decision.Policy, Timestamp: ts}
	for i, p := range products {
		d.Items = append(d.Items, decision.Item{ProductID: p, Position: int32(i + 1), Score: float64(10 - i)})
	}
	v, err := w.codec.AppendDecision(nil, &d)
	if err != nil {
		w.t.Fatal(err)
	}
	w.produce(id, decision.TypeDecision, v, ts)
}

func (w *logWriter) reward(id, product string, reward float64, ts int64) {
	w.t.Helper()
	v, err := w.codec.AppendReward(nil, &decision.Reward{EventID: id, Model: "m", ProductID: product, Reward: reward, Timestamp: ts})
	if err != nil {
		w.t.Fatal(err)
	}
	w.produce(id, decision.TypeReward, v, ts)
}

// tick moves the time of id's partition to ts.
func (w *logWriter) tick(id string, ts int64) { w.produce(id, decision.TypeTick, nil, ts) }

// drain reads the committed records of topic from its start until none
// came for quiet (after at least want records, if want > 0).
func drain(t *testing.T, brokers []string, topic string, want int, quiet time.Duration) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 && len(out) >= want {
			return out
		}
	}
	t.Fatalf("%s: %d records after 60s, want at least %d", topic, len(out), want)
	return nil
}

// events decodes feedback events as "event id=reward" strings, sorted,
// checking each one's key and context.
func events(t *testing.T, recs []*kgo.Record, contexts map[string][]float64) []string {
	t.Helper()
	codec, err := event.NewCodec(2)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		ev, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatalf("feedback event at %d/%d: %v", r.Partition, r.Offset, err)
		}
		if string(r.Key) != ev.ProductID {
			t.Errorf("event %s keyed %q, want its product", ev.EventID, r.Key)
		}
		decisionID, product, _ := strings.Cut(ev.EventID, "/")
		if product != ev.ProductID {
			t.Errorf("event %s is for product %s", ev.EventID, ev.ProductID)
		}
		if x := contexts[decisionID]; !slices.Equal(x, ev.ContextVector) {
			t.Errorf("event %s has context %v, its decision %v", ev.EventID, ev.ContextVector, x)
		}
		out = append(out, fmt.Sprintf("%s=%g", ev.EventID, ev.Reward))
	}
	sort.Strings(out)
	return out
}

func newCluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// startJoiner runs a joiner until the test ends.
func startJoiner(t *testing.T, cfg joiner.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- joiner.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("joiner: %v", err)
		}
	})
}

// TestImpressions: when a decision's wait ends, every other shown product
// counts with reward 0 (all), or only those above the click (above; all of
// them for a decision without a click, as the simulator counts them).
func TestImpressions(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []string
	}{
		{joiner.ImpressionsAll, []string{"d1/a=0", "d1/b=0", "d1/c=1", "d1/d=0", "d2/e=0", "d2/f=0"}},
		{joiner.ImpressionsAbove, []string{"d1/a=0", "d1/b=0", "d1/c=1", "d2/e=0", "d2/f=0"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			brokers := newCluster(t)
			w := newLogWriter(t, brokers, decision.DefaultTopic)
			startJoiner(t, joiner.Config{Brokers: brokers, Partitions: 3, RewardWait: time.Second, Impressions: tc.mode,
				TickInterval: time.Hour, TransactionalID: "t-" + tc.mode})
			x1, x2 := []float64{1, 0.5}, []float64{0, 2}
			w.decision("d1", x1, t0, "a", "b", "c", "d")
			w.decision("d2", x2, t0+1, "e", "f")
			w.reward("d1", "c", 1, t0+10)
			w.tick("d1", t0+5000)
			w.tick("d2", t0+5000)
			got := events(t, drain(t, brokers, feedbackTopic, len(tc.want), 500*time.Millisecond),
				map[string][]float64{"d1": x1, "d2": x2})
			if !slices.Equal(got, tc.want) {
				t.Errorf("feedback events\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestDeadLetters: duplicate, late, unknown and not-in-slate rewards are
// dead-lettered with their reason; a reward logged before its decision is
// matched.
func TestDeadLetters(t *testing.T) {
	brokers := newCluster(t)
	w := newLogWriter(t, brokers, decision.DefaultTopic)
	startJoiner(t, joiner.Config{Brokers: brokers, Partitions: 3, RewardWait: time.Second, TickInterval: time.Hour, TransactionalID: "t-dlq"})
	x := []float64{1, 1}
	w.decision("d1", x, t0, "a", "b")
	w.reward("d1", "a", 1, t0+1)
	w.reward("d1", "a", 1, t0+2) // duplicate
	w.reward("d1", "z", 1, t0+3) // not in the slate
	w.reward("d3", "x", 1, t0+4) // before its decision
	w.decision("d3", x, t0+5, "x", "y")
	w.reward("nope", "a", 1, t0+6) // no decision ever
	w.decision("d4", x, t0, "p", "q")
	w.reward("d4", "p", 1, t0+1500) // after the wait, within the memory: late
	w.decision("d5", x, t0, "r")
	w.reward("d5", "r", 1, t0+2500) // after the memory: unknown
	for _, id := range []string{"d1", "d3", "nope", "d4", "d5"} {
		w.tick(id, t0+10000)
	}
	wantEvents := []string{"d1/a=1", "d1/b=0", "d3/x=1", "d3/y=0", "d4/p=0", "d4/q=0", "d5/r=0"}
	got := events(t, drain(t, brokers, feedbackTopic, len(wantEvents), 500*time.Millisecond),
		map[string][]float64{"d1": x, "d3": x, "d4": x, "d5": x})
	if !slices.Equal(got, wantEvents) {
		t.Errorf("feedback events\n got %v\nwant %v", got, wantEvents)
	}
	wantDead := []string{"d1:duplicate-reward", "d1:not-in-slate", "d4:late-reward", "d5:unknown-decision", "nope:unknown-decision"}
	var dead []string
	codec, _ := decision.NewCodec()
	for _, r := range drain(t, brokers, dlqTopic, len(wantDead), 300*time.Millisecond) {
		h := map[string]string{}
		for _, kv := range r.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if _, err := codec.DecodeReward(r.Value); err != nil {
			t.Errorf("dead letter %s is not the reward: %v", r.Key, err)
		}
		if h["source-topic"] != decision.DefaultTopic || h["source-offset"] == "" || h["error"] == "" {
			t.Errorf("dead letter %s headers %v", r.Key, h)
		}
		dead = append(dead, string(r.Key)+":"+h["reason"])
	}
	sort.Strings(dead)
	if !slices.Equal(dead, wantDead) {
		t.Errorf("dead letters\n got %v\nwant %v", dead, wantDead)
	}
}

// TestIdlePartitionTicks: a decision in a partition that gets no more
// records still ends its wait (the joiner ticks the partition) while other
// partitions keep the joiner busy.
func TestIdlePartitionTicks(t *testing.T) {
	brokers := newCluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	codec, _ := decision.NewCodec()
	startJoiner(t, joiner.Config{Brokers: brokers, Partitions: 3, RewardWait: 200 * time.Millisecond,
		TickInterval: 100 * time.Millisecond, TransactionalID: "t-idle"})
	x := []float64{1, 2}
	v, err := codec.AppendDecision(nil, &decision.Decision{EventID: "d1", Model: "m", Context: x, Policy: decision.Policy,
		Items: []decision.Item{{ProductID: "a", Position: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	produce := func(p int32, typ string, value []byte) {
		r := &kgo.Record{Topic: decision.DefaultTopic, Partition: p, Value: value,
			Headers: []kgo.RecordHeader{{Key: decision.TypeHeader, Value: []byte(typ)}}}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, decision.TypeDecision, v)
	stop := make(chan struct{})
	busy := make(chan struct{})
	go func() { // partitions 1 and 2 busy until the event is out
		defer close(busy)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				produce(1, decision.TypeTick, nil)
				produce(2, decision.TypeTick, nil)
			}
		}
	}()
	defer func() { close(stop); <-busy }()
	got := events(t, drain(t, brokers, feedbackTopic, 1, 3*time.Second), map[string][]float64{"d1": x})
	if !slices.Equal(got, []string{"d1/a=0"}) {
		t.Fatalf("feedback events %v, want d1/a=0", got)
	}
}
