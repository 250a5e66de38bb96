package joiner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/trainer"
	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/joiner"
)

const e2eDim = 3

// twinModels writes models byid and ctx with the same arms.
func twinModels(t *testing.T, c rueidis.Client) []string {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 8))
	var ids []string
	var arms []store.ArmWrite
	var events int64
	for a := 0; a < 6; a++ {
		arm := linucb.NewArm(e2eDim, 1)
		for e := 0; e < rng.IntN(8); e++ {
			if err := arm.Update([]float64{rng.Float64(), rng.Float64(), 1}, float64(rng.IntN(2))); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("p%d", a)
		ids = append(ids, id)
		events += arm.N()
		arms = append(arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	for _, m := range []string{"byid", "ctx"} {
		w := store.Write{Model: m, Features: []string{"f0", "f1", "f2"}, Lambda: 1, Events: events, Arms: arms}
		if _, err := w.Apply(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func post(t *testing.T, url, body string) map[string]any {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s %s: %d %v", url, body, resp.StatusCode, m)
	}
	return m
}

// TestRewardByEventID: rewards by event id, through the sidecar's decision
// log, the joiner, the feedback topic and the trainer, change the model
// exactly as the same events sent in the context form (a click and every
// other shown product with reward 0) change its twin.
func TestRewardByEventID(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(3, decision.DefaultTopic, feedbackTopic, "feedback-ctx"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	srv := redistest.Start(t)
	c := srv.Client()
	ids := twinModels(t, c)
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	serve := func(cfg sidecar.Config) string {
		cfg.Redis, cfg.Producer, cfg.Timeout = c, prod, 5*time.Second
		s := sidecar.New(cfg)
		if err := s.Prepare(context.Background()); err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler())
		t.Cleanup(hs.Close)
		return hs.URL
	}
	byID := serve(sidecar.Config{Model: "byid", DecisionsTopic: decision.DefaultTopic, DecisionLog: prod})
	withCtx := serve(sidecar.Config{Model: "ctx", Topic: "feedback-ctx"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 3)
	go func() {
		done <- joiner.Run(ctx, joiner.Config{Brokers: brokers, Partitions: 3, Model: "byid", RewardWait: 300 * time.Millisecond,
			TickInterval: 100 * time.Millisecond, TransactionalID: "e2e"})
	}()
	for _, m := range []string{"byid", "ctx"} {
		topic := feedbackTopic
		if m == "ctx" {
			topic = "feedback-ctx"
		}
		go func() {
			done <- trainer.Run(ctx, trainer.Config{Brokers: brokers, Topic: topic, Group: "t-" + m, Partitions: 3,
				Redis: c, Model: m, FlushInterval: 100 * time.Millisecond})
		}()
	}

	base := armEvents(readArms(t, c, "byid", e2eDim, ids))
	rng := rand.New(rand.NewPCG(9, 10))
	var want int64
	for visit := 0; visit < 8; visit++ {
		x := []float64{math.Round(rng.Float64()*1000) / 1000, float64(visit % 2), 1}
		xs, _ := json.Marshal(x)
		rec := post(t, byID+"/v1/recommend", fmt.Sprintf(`{"context": %s, "k": 3}`, xs))
		eventID := rec["event_id"].(string)
		items := rec["items"].([]any)
		click := visit % 4 // 3: no click
		var batch []string
		for i, it := range items {
			id := it.(map[string]any)["id"].(string)
			reward := 0
			if i == click {
				reward = 1
				post(t, byID+"/v1/feedback", fmt.Sprintf(`{"event_id": %q, "product_id": %q, "reward": 1}`, eventID, id))
			}
			batch = append(batch, fmt.Sprintf(`{"product_id": %q, "reward": %d, "context": %s}`, id, reward, xs))
		}
		post(t, withCtx+"/v1/feedback", `{"events": [`+strings.Join(batch, ",")+`]}`)
		want += int64(len(items))
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		a, b := readArms(t, c, "byid", e2eDim, ids), readArms(t, c, "ctx", e2eDim, ids)
		na, nb := armEvents(a), armEvents(b)
		if na == nb && na >= want+base {
			for i := range a {
				if a[i].Arm.N() != b[i].Arm.N() {
					t.Errorf("%s: n %d by id, %d with context", ids[i], a[i].Arm.N(), b[i].Arm.N())
				}
				for _, pair := range [][2][]float64{{a[i].Arm.A(), b[i].Arm.A()}, {a[i].Arm.B(), b[i].Arm.B()}} {
					for k := range pair[0] {
						if d := math.Abs(pair[0][k] - pair[1][k]); d > 1e-12 {
							t.Errorf("%s: element %d differs by %g (%v vs %v)", ids[i], k, d, pair[0][k], pair[1][k])
						}
					}
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("models did not converge: %d events by id, %d with context, want %d new", na, nb, want)
		}
		select {
		case err := <-done:
			t.Fatalf("a component stopped: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancel()
	for range 3 {
		if err := <-done; err != nil {
			t.Errorf("stopped with %v", err)
		}
	}
}

func readArms(t *testing.T, c rueidis.Client, m string, dim int, ids []string) []store.StoredArm {
	t.Helper()
	arms, err := store.ReadArms(context.Background(), c, m, dim, 1, ids)
	if err != nil {
		t.Fatal(err)
	}
	return arms
}

func armEvents(arms []store.StoredArm) int64 {
	var n int64
	for _, a := range arms {
		n += a.Arm.N()
	}
	return n
}
