package sidecar_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/trainer"
	"github.com/redbandit/redbandit/training/event"
)

// kafka starts an in-process Kafka with the feedback topic and returns a
// producer client and a function reading back every record of the topic.
func kafka(t *testing.T) (*kfake.Cluster, *kgo.Client, func() []*kgo.Record) {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, sidecar.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordDeliveryTimeout(time.Second),
		kgo.RequestTimeoutOverhead(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	// read consumes the topic from the start up to the end offsets listed
	// when it is called, so it neither misses a slow fetch nor waits on a
	// timer; a topic that cannot be read to its end in 30s fails the test.
	read := func() []*kgo.Record {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, sidecar.DefaultTopic)
		if err != nil {
			t.Fatal(err)
		}
		left := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				t.Fatalf("end offset of partition %d: %v", o.Partition, o.Err)
			}
			if o.Offset > 0 {
				left[o.Partition] = o.Offset
			}
		})
		cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(sidecar.DefaultTopic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		var out []*kgo.Record
		for len(left) > 0 {
			fs := cons.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("read %d records; partitions not read to their end: %v", len(out), left)
			}
			fs.EachRecord(func(r *kgo.Record) {
				out = append(out, r)
				if end, ok := left[r.Partition]; ok && r.Offset+1 >= end {
					delete(left, r.Partition)
				}
			})
		}
		return out
	}
	return cluster, prod, read
}

// TestFeedback posts single and batched feedback in every context form and
// reads back what reached Kafka: the trainer's encoding, keyed by product.
func TestFeedback(t *testing.T) {
	_, prod, read := kafka(t)
	f := newFixture(t, sidecar.Config{Producer: prod})
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(1, 1))
	attrs := randomAttributes(rng)
	x, _ := sp.Encode(attrs)
	dense := fmt.Sprint(x)
	dense = strings.ReplaceAll(strings.Trim(dense, "[]"), " ", ",")
	status, m := f.post("/v1/feedback", `{"event_id": "e1", "product_id": "dish-03", "reward": 1, "context": [`+dense+`], "timestamp": 1767388500000}`)
	if status != 202 || m["accepted"].(float64) != 1 {
		t.Fatalf("single: %d %v", status, m)
	}
	status, m = f.post("/v1/feedback", `{"events": [
		{"event_id": "e2", "product_id": "dish-04", "reward": 0, "context": {"age": 0.5, "gender_F": 1}, "timestamp": "2026-01-03T08:15:00+11:00"},
		{"event_id": "e3", "product_id": "dish-05", "reward": 0.25, "attributes": `+mustJSON(attrs)+`}]}`)
	if status != 202 || m["accepted"].(float64) != 2 {
		t.Fatalf("batch: %d %v", status, m)
	}
	codec, err := event.NewCodec(15)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]event.Event{}
	for _, r := range read() {
		ev, err := codec.Decode(r.Value)
		if err != nil {
			t.Fatalf("record %q: %v", r.Value, err)
		}
		if string(r.Key) != ev.ProductID {
			t.Errorf("record keyed %q for product %q", r.Key, ev.ProductID)
		}
		got[ev.EventID] = ev
	}
	named := make([]float64, 15)
	named[0], named[3] = 0.5, 1
	want := map[string]event.Event{
		"e1": {EventID: "e1", ProductID: "dish-03", Reward: 1, ContextVector: x, Timestamp: 1767388500000},
		"e2": {EventID: "e2", ProductID: "dish-04", Reward: 0, ContextVector: named, Timestamp: 1767388500000},
		"e3": {EventID: "e3", ProductID: "dish-05", Reward: 0.25, ContextVector: x},
	}
	if len(got) != 3 {
		t.Fatalf("%d events in Kafka, want 3: %v", len(got), got)
	}
	for id, w := range want {
		g := got[id]
		if g.ProductID != w.ProductID || g.Reward != w.Reward || fmt.Sprint(g.ContextVector) != fmt.Sprint(w.ContextVector) ||
			(w.Timestamp != 0 && g.Timestamp != w.Timestamp) || (w.Timestamp == 0 && time.Since(time.UnixMilli(g.Timestamp)) > time.Minute) {
			t.Errorf("%s: got %+v, want %+v", id, g, w)
		}
	}

	for name, body := range map[string]string{
		"missing product":    `{"reward": 1, "context": [` + dense + `]}`,
		"reward 2":           `{"product_id": "a", "reward": 2, "context": [` + dense + `]}`,
		"no reward":          `{"product_id": "a", "context": [` + dense + `]}`,
		"wrong dimension":    `{"product_id": "a", "reward": 1, "context": [1, 0]}`,
		"unknown feature":    `{"product_id": "a", "reward": 1, "context": {"shoe": 1}}`,
		"beyond 1e100":       `{"product_id": "a", "reward": 1, "context": {"age": 1e200}}`,
		"bad timestamp":      `{"product_id": "a", "reward": 1, "context": [` + dense + `], "timestamp": "yesterday"}`,
		"one bad of a batch": `{"events": [{"product_id": "a", "reward": 1, "context": [` + dense + `]}, {"product_id": "b", "reward": 1, "context": [1]}]}`,
		"both forms":         `{"product_id": "a", "reward": 1, "context": [` + dense + `], "events": [{"product_id": "b", "reward": 1, "context": [1]}]}`,
	} {
		if status, m := f.post("/v1/feedback", body); status != 400 || m["error"] == nil {
			t.Errorf("%s: %d %v, want 400", name, status, m)
		}
	}
	if n := len(read()); n != 3 {
		t.Fatalf("rejected requests reached Kafka: %d records", n)
	}
}

func TestFeedbackUnavailable(t *testing.T) {
	off := newFixture(t, sidecar.Config{})
	if status, m := off.post("/v1/feedback", `{"product_id": "a", "reward": 1, "context": [1]}`); status != 503 || !strings.Contains(m["error"].(string), "--brokers") {
		t.Fatalf("feedback off: %d %v", status, m)
	}
	cluster, prod, _ := kafka(t)
	f := newFixture(t, sidecar.Config{Producer: prod})
	x := make([]float64, 15)
	body := `{"product_id": "a", "reward": 1, "context": ` + mustJSON(x) + `}`
	if status, m := f.post("/v1/feedback", body); status != 202 {
		t.Fatalf("before: %d %v", status, m)
	}
	cluster.Close()
	if status, m := f.post("/v1/feedback", body); status != 503 || m["error"] == nil {
		t.Fatalf("Kafka down: %d %v, want 503", status, m)
	}
	if status, _ := f.get("/readyz"); status != 503 {
		t.Fatalf("readyz with Kafka down: %d, want 503", status)
	}
	// Recommendations do not need Kafka.
	if status, _ := f.post("/v1/recommend", `{"context": `+mustJSON(x)+`}`); status != 200 {
		t.Fatalf("recommend with Kafka down: %d", status)
	}
}

// TestFeedbackReachesTrainer: feedback posted to the sidecar is consumed by
// the trainer and changes the model: the product's n grows by one and its b
// by reward·x.
func TestFeedbackReachesTrainer(t *testing.T) {
	cluster, prod, _ := kafka(t)
	f := newFixture(t, sidecar.Config{Producer: prod})
	c := f.srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before, err := store.ReadArms(ctx, c, "shop", 15, 1, []string{"dish-07"})
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float64, 15)
	x[0], x[3], x[9], x[10], x[13] = 0.4, 1, 1, 1, 1
	status, m := f.post("/v1/feedback", `{"product_id": "dish-07", "reward": 1, "context": `+mustJSON(x)+`}`)
	if status != 202 {
		t.Fatalf("feedback: %d %v", status, m)
	}
	done := make(chan error, 1)
	go func() {
		done <- trainer.Run(ctx, trainer.Config{Brokers: cluster.ListenAddrs(), Topic: sidecar.DefaultTopic, Redis: c, Model: "shop",
			FlushInterval: 100 * time.Millisecond})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		after, err := store.ReadArms(ctx, c, "shop", 15, 1, []string{"dish-07"})
		if err != nil {
			t.Fatal(err)
		}
		if after[0].Arm.N() == before[0].Arm.N()+1 {
			for i := range x {
				if d := after[0].Arm.B()[i] - before[0].Arm.B()[i] - x[i]; d > 1e-12 || d < -1e-12 {
					t.Fatalf("b[%d] moved by %v, want %v", i, after[0].Arm.B()[i]-before[0].Arm.B()[i], x[i])
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trainer did not fold the event: n %d → %d", before[0].Arm.N(), after[0].Arm.N())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("trainer: %v", err)
	}
}
