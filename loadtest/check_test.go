package loadtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

// smallCatalog returns a catalogue of n products of dimension 2 whose arm
// p<i> (with parameters if withParams) saw context (1, 0) with reward 1
// i times, so that its score for x = (1, 0) increases with i.
func smallCatalog(t *testing.T, n int, withParams bool) *Catalog {
	t.Helper()
	cat := &Catalog{Model: "m", Dim: 2}
	for i := range n {
		cat.IDs = append(cat.IDs, fmt.Sprintf("p%d", i))
		if withParams {
			arm := linucb.NewArm(2, 1)
			for range i {
				if err := arm.Update([]float64{1, 0}, 1); err != nil {
					t.Fatal(err)
				}
			}
			p, err := arm.Solve()
			if err != nil {
				t.Fatal(err)
			}
			cat.Params = append(cat.Params, p)
		}
	}
	cat.buildIndex()
	return cat
}

func kindOf(err error) string {
	var ae *AnswerError
	if errors.As(err, &ae) {
		return ae.Kind
	}
	return fmt.Sprint(err)
}

func TestChecker(t *testing.T) {
	cat := smallCatalog(t, 4, false)
	ch := newChecker(cat, 3, 0.1)
	whole := &request{x: []float64{1, 0}}
	cands := &request{x: []float64{1, 0}, cands: []int{1, 3}, names: []string{"p1", "p3"}}
	it := func(id string, s float64) store.Item { return store.Item{ID: id, Score: s} }
	cases := []struct {
		name  string
		req   *request
		items []store.Item
		kind  string // "" for a right answer
	}{
		{"right", whole, []store.Item{it("p2", 3), it("p0", 2), it("p1", 2)}, ""},
		{"ties allowed", whole, []store.Item{it("p2", 1), it("p0", 1), it("p1", 1)}, ""},
		{"increasing scores", whole, []store.Item{it("p2", 1), it("p0", 2), it("p1", 3)}, KindNotSorted},
		{"NaN score", whole, []store.Item{it("p2", 3), it("p0", math.NaN()), it("p1", 1)}, KindNotSorted},
		{"too few", whole, []store.Item{it("p2", 3), it("p0", 2)}, KindWrongCount},
		{"too many", whole, []store.Item{it("p2", 3), it("p0", 2), it("p1", 1), it("p3", 0)}, KindWrongCount},
		{"empty", whole, nil, KindWrongCount},
		{"unknown id", whole, []store.Item{it("p2", 3), it("zz", 2), it("p1", 1)}, KindUnknownID},
		{"duplicate id", whole, []store.Item{it("p2", 3), it("p2", 2), it("p1", 1)}, KindDuplicateID},
		// Two candidates: min(k=3, 2) = 2 items, both from the list.
		{"candidates right", cands, []store.Item{it("p3", 3), it("p1", 2)}, ""},
		{"candidates count", cands, []store.Item{it("p3", 3), it("p1", 2), it("p0", 1)}, KindWrongCount},
		{"not a candidate", cands, []store.Item{it("p3", 3), it("p0", 2)}, KindUnknownID},
		// The previous request's candidates must not leak into this one.
		{"right after candidates", whole, []store.Item{it("p0", 3), it("p3", 2), it("p1", 1)}, ""},
	}
	for _, c := range cases {
		err := ch.check(c.req, c.items)
		if c.kind == "" {
			if err != nil {
				t.Errorf("%s: %v, want a right answer", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrWrongAnswer) || kindOf(err) != c.kind || ErrorKind(err) != c.kind {
			t.Errorf("%s: %v, want a %s wrong answer", c.name, err, c.kind)
		}
	}
}

func TestCheckerScores(t *testing.T) {
	cat := smallCatalog(t, 3, true)
	ch := newChecker(cat, 2, 0.1)
	x := []float64{1, 0}
	req := &request{x: x}
	s := func(i int) float64 { return linucb.Score(x, cat.Params[i], 0.1) }
	if err := ch.check(req, []store.Item{{ID: "p2", Score: s(2)}, {ID: "p1", Score: s(1)}}); err != nil {
		t.Fatalf("reference scores: %v", err)
	}
	// Still in order, but p1's score is off by 1e-6 relative.
	err := ch.check(req, []store.Item{{ID: "p2", Score: s(2)}, {ID: "p1", Score: s(1) * (1 - 1e-6)}})
	if kindOf(err) != KindWrongScore {
		t.Fatalf("off score: %v, want %s", err, KindWrongScore)
	}
}

func TestErrorKind(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("recommend: %w: no model at rb:{x}", store.ErrNoModel): "NOMODEL",
		fmt.Errorf("%w: k", store.ErrBadArg):                              "BADARG",
		fmt.Errorf("%w: format", store.ErrBadModel):                       "BADMODEL",
		fmt.Errorf("call: %w", context.DeadlineExceeded):                  KindTimeout,
		wrong(KindWrongCount, "x"):                                        KindWrongCount,
		errors.New("something"):                                           KindOther,
	} {
		if got := ErrorKind(err); got != want {
			t.Errorf("ErrorKind(%v) = %q, want %q", err, got, want)
		}
	}
}

// fakeTarget answers every request with the same items, through the
// checker, without Redis.
type fakeTarget struct {
	ch    *checker
	items []store.Item
	delay time.Duration
}

func (f *fakeTarget) do(_ context.Context, _ rueidis.Client, batch []*request, errs []error) {
	time.Sleep(f.delay)
	for i, r := range batch {
		errs[i] = f.ch.check(r, f.items)
	}
}

func fakePhase(cat *Catalog, items []store.Item, clients int) *phase {
	return &phase{
		name: "fake", label: "fake", clients: make([]rueidis.Client, clients), cat: cat, nonzero: 2, pipeline: 1,
		newTarget: func() target { return &fakeTarget{ch: newChecker(cat, 3, 0.1), items: items} },
	}
}

// TestWrongAnswersAreErrors runs a phase whose target answers with
// increasing scores: every request must count as a not-descending error,
// none as a success.
func TestWrongAnswersAreErrors(t *testing.T) {
	cat := smallCatalog(t, 4, false)
	p := fakePhase(cat, []store.Item{{ID: "p0", Score: 1}, {ID: "p1", Score: 2}, {ID: "p2", Score: 3}}, 3)
	p.requests, p.pipeline = 100, 7
	res, err := p.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Errors != 100 || res.ErrorKinds[KindNotSorted] != 100 || len(res.ErrorKinds) != 1 || res.Latency.Count() != 0 {
		t.Fatalf("wrong answers: %d requests, %d errors %v, %d latencies; want 100 not-descending errors and no latencies",
			res.Requests, res.Errors, res.ErrorKinds, res.Latency.Count())
	}
	// The same phase with right answers has no errors.
	p = fakePhase(cat, []store.Item{{ID: "p3", Score: 3}, {ID: "p1", Score: 2}, {ID: "p2", Score: 2}}, 3)
	p.requests, p.pipeline = 100, 7
	if res, err = p.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.Errors != 0 || res.Latency.Count() != 100 || res.RPS <= 0 {
		t.Fatalf("right answers: %d requests, %d errors %v, %d latencies, %v rps", res.Requests, res.Errors, res.ErrorKinds, res.Latency.Count(), res.RPS)
	}
}

// TestOpenLoop checks the schedule: 200 requests at 2,000/s take at least
// 99.5 ms however many clients there are, and a target slower than the
// schedule is charged the queueing (latency from the scheduled time).
func TestOpenLoop(t *testing.T) {
	cat := smallCatalog(t, 4, false)
	right := []store.Item{{ID: "p3", Score: 3}, {ID: "p1", Score: 2}, {ID: "p2", Score: 2}}
	p := fakePhase(cat, right, 4)
	p.requests, p.rate = 200, 2000
	res, err := p.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || res.Errors != 0 || res.Elapsed < 99500*time.Microsecond || res.Lag.Count() != 200 {
		t.Fatalf("open loop: %d requests, %d errors in %v, %d lags", res.Requests, res.Errors, res.Elapsed, res.Lag.Count())
	}
	// One client taking 5 ms per request, scheduled every 1 ms: request i
	// waits about 4i ms, so the last of 20 waits about 76 ms + 5 ms.
	p = fakePhase(cat, right, 1)
	p.requests, p.rate = 20, 1000
	p.newTarget = func() target {
		return &fakeTarget{ch: newChecker(cat, 3, 0.1), items: right, delay: 5 * time.Millisecond}
	}
	if res, err = p.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res.Latency.Max() < 80*time.Millisecond || res.Latency.Min() < 5*time.Millisecond {
		t.Fatalf("coordinated omission: latencies %v..%v, want the last >= 80ms", res.Latency.Min(), res.Latency.Max())
	}
	// The same closed loop: every latency is about the 5 ms service time
	// (the median, so that one stall of a loaded machine does not count;
	// latencies growing with the schedule would put it near 40 ms).
	p.rate = 0
	if res, err = p.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := res.Latency.Quantile(0.5); q > 20*time.Millisecond {
		t.Fatalf("closed loop: median latency %v, want about 5ms", q)
	}
}

func TestCancel(t *testing.T) {
	cat := smallCatalog(t, 4, false)
	p := fakePhase(cat, []store.Item{{ID: "p3", Score: 3}, {ID: "p1", Score: 2}, {ID: "p2", Score: 2}}, 2)
	p.duration = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled phase: %v", err)
	}
}
