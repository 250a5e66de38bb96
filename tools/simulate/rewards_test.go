package simulate_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
)

// stubIDs is stub with an event id per visit, as the sidecar answers.
type stubIDs struct{}

func (stubIDs) Recommend(_ context.Context, v *simulate.Visit, k int) ([]string, error) {
	v.EventID = fmt.Sprintf("e%d", v.N)
	return stubSlate(v.N, k), nil
}

// tee sends each feedback to a sink, then records it.
type tee struct {
	simulate.Sink
	r *recorder
}

func (t tee) Send(ctx context.Context, fb simulate.Feedback) error {
	if err := t.Sink.Send(ctx, fb); err != nil {
		return err
	}
	return t.r.Send(ctx, fb)
}

// TestRewardsSink: with FeedbackReward the Rewards sink POSTs, for each
// visit with a click and only for those, the clicked product's reward by
// the visit's event id to /v1/feedback; the expected events (the joiner's)
// are the click and the products above it, all five without a click, with
// the joiner's ids.
func TestRewardsSink(t *testing.T) {
	type body struct {
		Model     string  `json:"model"`
		EventID   string  `json:"event_id"`
		ProductID string  `json:"product_id"`
		Reward    float64 `json:"reward"`
	}
	var (
		mu  sync.Mutex
		got = map[string]body{}
	)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b body
		if r.Method != http.MethodPost || r.URL.Path != "/v1/feedback" || json.NewDecoder(r.Body).Decode(&b) != nil {
			http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[b.EventID]; dup {
			t.Errorf("reward %s sent twice", b.EventID)
		}
		got[b.EventID] = b
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted":1}`))
	}))
	defer hs.Close()
	rw := &simulate.Rewards{URL: hs.URL, Model: "m"}
	rec := &recorder{}
	sum, err := simulate.Run(context.Background(), simulate.Config{Visits: 300, Feedback: simulate.FeedbackReward, Recommender: stubIDs{},
		Sink: tee{rw, rec}, Now: scenario.DefaultNow})
	if err != nil {
		t.Fatal(err)
	}
	clicks, expected := 0, 0
	for _, fb := range rec.fbs {
		want := 5
		b, ok := got[fb.EventID]
		if fb.Clicked >= 0 {
			clicks++
			want = fb.Clicked + 1
			if !ok || b != (body{"m", fb.EventID, fb.Slate[fb.Clicked], 1}) {
				t.Errorf("visit %d: reward %+v (sent %v), want %s's click on %s", fb.Visit.N, b, ok, fb.EventID, fb.Slate[fb.Clicked])
			}
		} else if ok {
			t.Errorf("visit %d without a click: reward %+v sent", fb.Visit.N, b)
		}
		if fb.EventID != fmt.Sprintf("e%d", fb.Visit.N) || len(fb.Impressions) != want {
			t.Fatalf("visit %d: event id %s, %d impressions; want e%d, %d", fb.Visit.N, fb.EventID, len(fb.Impressions), fb.Visit.N, want)
		}
		for i, im := range fb.Impressions {
			r := 0.0
			if i == fb.Clicked {
				r = 1
			}
			if im.EventID != fb.EventID+"/"+fb.Slate[i] || im.ProductID != fb.Slate[i] || im.Reward != r {
				t.Errorf("visit %d impression %d: %+v", fb.Visit.N, i, im)
			}
		}
		expected += want
	}
	if len(rec.fbs) != 300 || clicks == 0 || clicks == 300 || len(got) != clicks || rw.Sent() != clicks || sum.Sent != expected ||
		sum.Feedback != simulate.FeedbackReward || sum.Impressions != simulate.ImpressionsAbove {
		t.Errorf("%d visits, %d clicks: %d rewards received, %d counted sent; summary sent %d (want %d), %s %s",
			len(rec.fbs), clicks, len(got), rw.Sent(), sum.Sent, expected, sum.Feedback, sum.Impressions)
	}
}

// TestRewardsErrors: a sidecar that refuses a reward stops the run with its
// answer; a recommender without event ids (EVALSHA) cannot feed rewards
// back; nor can the random policy, whose slates are no decisions.
func TestRewardsErrors(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"a reward by event id needs the decision log"}`, http.StatusBadRequest)
	}))
	defer hs.Close()
	run := func(rec simulate.Recommender, policy string) error {
		_, err := simulate.Run(context.Background(), simulate.Config{Visits: 50, Feedback: simulate.FeedbackReward, Policy: policy,
			Recommender: rec, Sink: &simulate.Rewards{URL: hs.URL}, Now: scenario.DefaultNow})
		return err
	}
	if err := run(stubIDs{}, ""); err == nil || !strings.Contains(err.Error(), "needs the decision log") {
		t.Errorf("a refused reward: %v", err)
	}
	if err := run(stub{}, ""); !errors.Is(err, simulate.ErrNoEventID) {
		t.Errorf("no event id: %v, want ErrNoEventID", err)
	}
	if err := run(stubIDs{}, simulate.Random); !errors.Is(err, simulate.ErrSetting) {
		t.Errorf("the random policy: %v, want ErrSetting", err)
	}
}
