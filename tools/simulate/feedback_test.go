package simulate_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/tools/scenario"
	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/training/event"
)

// recorder keeps every feedback it is sent.
type recorder struct{ fbs []simulate.Feedback }

func (r *recorder) Send(_ context.Context, fb simulate.Feedback) error {
	r.fbs = append(r.fbs, fb)
	return nil
}

func (r *recorder) events() []event.Event {
	var evs []event.Event
	for _, fb := range r.fbs {
		evs = append(evs, fb.Events()...)
	}
	return evs
}

// stub recommends a slate that depends on the visit number only, so a test
// knows every slate without the simulator.
type stub struct{}

func stubSlate(n, k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = fmt.Sprintf("p%03d", 1+(n*7+i*31)%202)
	}
	return out
}

func (stub) Recommend(_ context.Context, v *simulate.Visit, k int) ([]string, error) {
	return stubSlate(v.N, k), nil
}

func record(t *testing.T, cfg simulate.Config) (simulate.Summary, *recorder) {
	t.Helper()
	r := &recorder{}
	cfg.Sink, cfg.Recommender, cfg.Now = r, stub{}, scenario.DefaultNow
	sum, err := simulate.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sum, r
}

// TestFeedbackOneUnchanged: --feedback one sends exactly the events the
// simulator sent before impressions existed. The digests were taken from
// the simulator at 460833f (one event per visit, built in Run) on the same
// seeded runs.
func TestFeedbackOneUnchanged(t *testing.T) {
	for pol, want := range map[string]string{
		simulate.LinUCB: "97a320998dc674040988346fcb2a767f0fe8651dd14e995517eea18dfe5fd4f8",
		simulate.Random: "25666a1938744cb38a5c4ad0caef22148c03e729cd7cf35ad20f12c91367f7c1",
		simulate.Oracle: "c98a956ed282db5742e155d6ccc67f9a080f298f07a96ecf731752377124434c",
	} {
		sum, r := record(t, simulate.Config{Visits: 2000, Seed: 3, Policy: pol, Feedback: simulate.FeedbackOne})
		h := sha256.New()
		evs := r.events()
		for _, ev := range evs {
			fmt.Fprintf(h, "%s %s %v %v %d\n", ev.EventID, ev.ProductID, ev.Reward, ev.ContextVector, ev.Timestamp)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != want || len(evs) != 2000 || sum.Sent != 2000 {
			t.Errorf("%s: %d events (%d sent), digest %s; want 2000, %s", pol, len(evs), sum.Sent, got, want)
		}
	}
}

// TestFeedbackImpressions: on the same seeded visits (same users, times
// and click draws), impressions all sends one event per shown product in
// slate order, the clicked one with reward 1, the others 0; impressions
// above sends the click and the products above it (all five when nothing is
// clicked); one sends the click or the first product with reward 0. Each
// event carries the visit's context as the spec encodes it, and every id is
// unique.
func TestFeedbackImpressions(t *testing.T) {
	const visits = 1500
	sumAll, all := record(t, simulate.Config{Visits: visits, Seed: 9, Feedback: simulate.FeedbackImpressions, Impressions: simulate.ImpressionsAll})
	sumAbove, above := record(t, simulate.Config{Visits: visits, Seed: 9}) // the default
	sumOne, one := record(t, simulate.Config{Visits: visits, Seed: 9, Feedback: simulate.FeedbackOne})
	if sumAll.Feedback != "impressions" || sumAll.Impressions != "all" || sumAbove.Impressions != "above" || sumOne.Feedback != "one" || sumOne.Impressions != "" {
		t.Fatalf("settings reported: %s/%s, %s/%s, %s/%s", sumAll.Feedback, sumAll.Impressions, sumAbove.Feedback, sumAbove.Impressions, sumOne.Feedback, sumOne.Impressions)
	}
	for _, r := range []*recorder{all, above, one} {
		if len(r.fbs) != visits {
			t.Fatalf("%d feedbacks for %d visits", len(r.fbs), visits)
		}
	}
	sp := spec.Reference()
	clicks, nAbove := 0, 0
	ids := map[string]bool{}
	for i := range visits {
		n := i + 1
		slate := stubSlate(n, simulate.Slate)
		x, err := sp.Encode(all.fbs[i].Visit.User.Attributes(all.fbs[i].Visit.At))
		if err != nil {
			t.Fatal(err)
		}
		// all: five events, the slate in order, at most one reward 1.
		evs := all.fbs[i].Events()
		var products []string
		click := -1
		for pos, ev := range evs {
			products = append(products, ev.ProductID)
			if want := fmt.Sprintf("sim-9-%d-%d", n, pos); ev.EventID != want {
				t.Fatalf("visit %d: event id %q, want %q", n, ev.EventID, want)
			}
			if !slices.Equal(ev.ContextVector, x) || ev.Timestamp != all.fbs[i].Visit.At.UnixMilli() {
				t.Fatalf("visit %d: event context %v at %d, want %v at %d", n, ev.ContextVector, ev.Timestamp, x, all.fbs[i].Visit.At.UnixMilli())
			}
			switch {
			case ev.Reward == 1 && click < 0:
				click = pos
			case ev.Reward != 0:
				t.Fatalf("visit %d: reward %v at %d (click at %d)", n, ev.Reward, pos, click)
			}
			if ids[ev.EventID] {
				t.Fatalf("event id %s twice", ev.EventID)
			}
			ids[ev.EventID] = true
		}
		if !slices.Equal(products, slate) || all.fbs[i].Clicked != click {
			t.Fatalf("visit %d: impressions all %v (click %d, feedback says %d), want the slate %v", n, products, click, all.fbs[i].Clicked, slate)
		}
		if click >= 0 {
			clicks++
		}
		// above: the prefix of all's events down to the click.
		want := evs
		if click >= 0 {
			want = evs[:click+1]
		}
		if got := above.fbs[i].Events(); !slices.EqualFunc(got, want, sameEvent) {
			t.Fatalf("visit %d: impressions above %v, want %v", n, got, want)
		}
		nAbove += len(want)
		// one: the click, or the first product with reward 0, under the
		// visit's id.
		w1 := event.Event{EventID: fmt.Sprintf("sim-9-%d", n), ProductID: slate[0], ContextVector: x, Timestamp: evs[0].Timestamp}
		if click >= 0 {
			w1.ProductID, w1.Reward = slate[click], 1
		}
		if got := one.fbs[i].Events(); len(got) != 1 || !sameEvent(got[0], w1) {
			t.Fatalf("visit %d: feedback one %v, want %v", n, got, w1)
		}
	}
	if clicks == 0 || clicks == visits || nAbove == visits*simulate.Slate {
		t.Fatalf("%d clicks in %d visits, %d events above: the test sees no difference between the settings", clicks, visits, nAbove)
	}
	for _, c := range []struct {
		name       string
		sum        simulate.Summary
		sent, clks int
	}{{"all", sumAll, visits * simulate.Slate, clicks}, {"above", sumAbove, nAbove, clicks}, {"one", sumOne, visits, clicks}} {
		if c.sum.Sent != c.sent || c.sum.Clicks[simulate.LinUCB] != c.clks {
			t.Errorf("%s: %d events sent, %d clicks; want %d, %d", c.name, c.sum.Sent, c.sum.Clicks[simulate.LinUCB], c.sent, c.clks)
		}
	}
}

func sameEvent(a, b event.Event) bool {
	return a.EventID == b.EventID && a.ProductID == b.ProductID && a.Reward == b.Reward && a.Timestamp == b.Timestamp && slices.Equal(a.ContextVector, b.ContextVector)
}

// TestFeedbackSettings: an unknown setting is refused before any visit.
func TestFeedbackSettings(t *testing.T) {
	for _, cfg := range []simulate.Config{{Feedback: "some"}, {Impressions: "below"}, {Feedback: simulate.FeedbackOne, Impressions: "x"}} {
		r := &recorder{}
		cfg.Sink, cfg.Recommender, cfg.Visits = r, stub{}, 10
		if _, err := simulate.Run(context.Background(), cfg); !errors.Is(err, simulate.ErrSetting) || len(r.fbs) != 0 {
			t.Errorf("%+v: %v after %d feedbacks; want ErrSetting before any", cfg, err, len(r.fbs))
		}
	}
}
