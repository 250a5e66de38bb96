package sidecar_test

import (
	"context"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/training/decision"
)

// readDecisions reads n records of the decisions topic from its start.
func readDecisions(t *testing.T, brokers []string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(decision.DefaultTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d decision-log records, want %d", len(out), n)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Records of different keys may sit in different partitions: order
	// them as they were produced.
	slices.SortFunc(out, func(a, b *kgo.Record) int { return a.Timestamp.Compare(b.Timestamp) })
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestDecisionLog: a recommendation, an explanation asked to be logged and
// a reward by event id reach the decisions topic, keyed by event id, with
// what the answers said.
func TestDecisionLog(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, decision.DefaultTopic, sidecar.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	f := newFixture(t, sidecar.Config{Producer: prod, DecisionLog: prod, DecisionsTopic: decision.DefaultTopic})
	codec, err := decision.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	x := make([]float64, 15)
	x[0], x[3], x[9], x[10], x[13] = 0.4, 1, 1, 1, 1
	before := time.Now().UnixMilli()

	status, rec := f.post("/v1/recommend", `{"context": `+mustJSON(x)+`, "k": 3}`)
	if status != 200 {
		t.Fatalf("recommend: %d %v", status, rec)
	}
	status, exp := f.post("/v1/explain?log=true", `{"context": `+mustJSON(x)+`, "k": 2, "alpha": 0.5}`)
	if status != 200 || exp["event_id"] == nil {
		t.Fatalf("explain?log=true: %d %v", status, exp)
	}
	if status, m := f.post("/v1/explain", `{"context": `+mustJSON(x)+`, "k": 2}`); status != 200 || m["event_id"] != nil {
		t.Fatalf("explain without log: %d %v, want no event id", status, m)
	}
	if status, m := f.post("/v1/explain?log=maybe", `{"context": `+mustJSON(x)+`}`); status != 400 {
		t.Fatalf("explain?log=maybe: %d %v, want 400", status, m)
	}
	recItems := items(t, rec)
	eventID := rec["event_id"].(string)
	status, m := f.post("/v1/feedback", `{"event_id": "`+eventID+`", "product_id": "`+recItems[1].ID+`", "reward": 1}`)
	if status != 202 || m["accepted"] != 1.0 {
		t.Fatalf("reward by event id: %d %v", status, m)
	}
	if status, m := f.post("/v1/feedback", `{"event_id": "`+eventID+`", "product_id": "x", "reward": 2}`); status != 400 {
		t.Fatalf("reward 2 by event id: %d %v, want 400", status, m)
	}

	recs := readDecisions(t, brokers, 3)
	if len(recs) != 3 {
		t.Fatalf("%d records on the decisions topic, want 3 (recommend, explain?log=true, reward)", len(recs))
	}
	// Records of one millisecond may come in any order: find each by its
	// type and key.
	byTypeKey := map[string]*kgo.Record{}
	for _, r := range recs {
		byTypeKey[header(r, decision.TypeHeader)+" "+string(r.Key)] = r
	}
	find := func(typ, key string) *kgo.Record {
		t.Helper()
		r := byTypeKey[typ+" "+key]
		if r == nil {
			t.Fatalf("no %s keyed %s among the records %v", typ, key, slices.Collect(maps.Keys(byTypeKey)))
		}
		return r
	}
	d, err := codec.DecodeDecision(find(decision.TypeDecision, eventID).Value)
	if err != nil {
		t.Fatal(err)
	}
	if d.EventID != eventID || d.Model != "shop" || !slices.Equal(d.Context, x) || d.Alpha != 0.1 || d.Policy != "linucb" ||
		d.Propensities != nil || d.Timestamp < before || d.Timestamp > time.Now().UnixMilli() || len(d.Items) != 3 {
		t.Fatalf("logged decision %+v", d)
	}
	for i, it := range d.Items {
		if it.ProductID != recItems[i].ID || it.Position != int32(i+1) || it.Score != recItems[i].Score || it.Mean != nil || it.Bonus != nil {
			t.Errorf("logged item %d: %+v, answered %+v", i, it, recItems[i])
		}
	}

	d, err = codec.DecodeDecision(find(decision.TypeDecision, exp["event_id"].(string)).Value)
	if err != nil {
		t.Fatal(err)
	}
	if d.Alpha != 0.5 || len(d.Items) != 2 {
		t.Fatalf("logged explanation %+v", d)
	}
	for i, v := range exp["items"].([]any) {
		it := v.(map[string]any)
		li := d.Items[i]
		if li.ProductID != it["id"] || li.Mean == nil || li.Bonus == nil || *li.Mean != it["mean"].(float64) ||
			*li.Bonus != it["bonus"].(float64) || math.Abs(*li.Mean+*li.Bonus-li.Score) > 1e-9 {
			t.Errorf("logged explained item %d: %+v, answered %v", i, li, it)
		}
	}

	rw, err := codec.DecodeReward(find(decision.TypeReward, eventID).Value)
	if err != nil {
		t.Fatal(err)
	}
	if rw.EventID != eventID || rw.ProductID != recItems[1].ID || rw.Reward != 1 || rw.Model != "shop" || rw.Timestamp < before {
		t.Fatalf("logged reward %+v", rw)
	}
}

// TestRewardWithoutDecisionLog: a reward by event id needs the decision
// log; the context form still works without it.
func TestRewardWithoutDecisionLog(t *testing.T) {
	_, prod, read := kafka(t)
	f := newFixture(t, sidecar.Config{Producer: prod})
	status, m := f.post("/v1/feedback", `{"event_id": "e1", "product_id": "dish-01", "reward": 1}`)
	if status != 400 || !strings.Contains(m["error"].(string), "decision log") {
		t.Fatalf("reward by event id without a decision log: %d %v, want 400", status, m)
	}
	x := make([]float64, 15)
	if status, m := f.post("/v1/feedback", `{"event_id": "e1", "product_id": "dish-01", "reward": 1, "context": `+mustJSON(x)+`}`); status != 202 {
		t.Fatalf("context form: %d %v", status, m)
	}
	if n := len(read()); n != 1 {
		t.Fatalf("%d feedback records, want 1", n)
	}
}

// TestDecisionLogKafkaDown: with Kafka unreachable, recommendations still
// answer at once; decisions beyond the buffer are dropped and counted.
func TestDecisionLogKafkaDown(t *testing.T) {
	down, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.MaxBufferedRecords(2))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	f := newFixture(t, sidecar.Config{DecisionLog: down, DecisionsTopic: decision.DefaultTopic})
	x := make([]float64, 15)
	start := time.Now()
	for range 5 {
		if status, m := f.post("/v1/recommend", `{"context": `+mustJSON(x)+`}`); status != 200 {
			t.Fatalf("recommend: %d %v", status, m)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("5 recommendations took %v with Kafka down", took)
	}
	resp, err := http.Get(f.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if want := `redbandit_sidecar_decisions_dropped_total{reason="buffer-full"} 3`; !strings.Contains(string(body), want) {
		t.Fatalf("metrics lack %q:\n%s", want, grepLines(string(body), "decisions"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
