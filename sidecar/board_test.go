package sidecar_test

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
)

// TestArms: every product's events, mean reward, estimate and bonus equal
// the Go-side arms and scorer, ordered by events; limit keeps the busiest.
func TestArms(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	sp := spec.Reference()
	rng := rand.New(rand.NewPCG(21, 21))
	for i := 0; i < 3; i++ {
		attrs := randomAttributes(rng)
		x, err := sp.Encode(attrs)
		if err != nil {
			t.Fatal(err)
		}
		var resp sidecar.ArmsResponse
		f.postInto("/v1/arms", map[string]any{"attributes": attrs, "alpha": 0.3}, &resp)
		if resp.Products != len(f.ids) || len(resp.Arms) != len(f.ids) || resp.Alpha != 0.3 || len(resp.Context) != len(x) {
			t.Fatalf("%d products, %d arms, alpha %v, context %v", resp.Products, len(resp.Arms), resp.Alpha, resp.Context)
		}
		for j, a := range resp.Arms {
			arm, ok := f.arms[a.ID]
			if !ok {
				t.Fatalf("unknown product %q", a.ID)
			}
			if j > 0 {
				prev := resp.Arms[j-1]
				if prev.Events < a.Events || (prev.Events == a.Events && prev.ID > a.ID) {
					t.Fatalf("arms %d and %d out of order: %+v, %+v", j-1, j, prev, a)
				}
			}
			mean, q := linucb.MeanVar(x, f.params[a.ID])
			bonus := 0.3 * math.Sqrt(q)
			if a.Events != arm.N() || math.Abs(a.Estimate-mean) > 1e-9 || math.Abs(a.Bonus-bonus) > 1e-9 || math.Abs(a.Score-mean-bonus) > 1e-9 {
				t.Fatalf("%+v; want events %d estimate %v bonus %v", a, arm.N(), mean, bonus)
			}
			switch {
			case arm.N() == 0 && a.MeanReward != nil:
				t.Fatalf("%s has no events but mean reward %v", a.ID, *a.MeanReward)
			case arm.N() > 0 && (a.MeanReward == nil || math.Abs(*a.MeanReward-arm.Rewards()/float64(arm.N())) > 1e-12):
				t.Fatalf("%s: mean reward %v, want %v", a.ID, a.MeanReward, arm.Rewards()/float64(arm.N()))
			}
		}
		var top sidecar.ArmsResponse
		f.postInto("/v1/arms", map[string]any{"context": x, "limit": 5}, &top)
		if len(top.Arms) != 5 || top.Products != len(f.ids) || top.Alpha != linucb.DefaultAlpha {
			t.Fatalf("limit 5: %d arms of %d, alpha %v", len(top.Arms), top.Products, top.Alpha)
		}
		for j := range top.Arms {
			if top.Arms[j].ID != resp.Arms[j].ID {
				t.Fatalf("limit 5: arm %d is %s, want %s", j, top.Arms[j].ID, resp.Arms[j].ID)
			}
		}
	}
	for _, c := range []struct {
		body   string
		status int
	}{
		{`{"context": [1, 2]}`, 400},
		{`{"attributes": {"age": 30}}`, 400},
		{`{"context": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "limit": 0}`, 400},
		{`{"context": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "alpha": -1}`, 400},
		{`{"context": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "model": "nope"}`, 404},
		{`{"context": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "k": 5}`, 400},
	} {
		if status, m := f.post("/v1/arms", c.body); status != c.status || m["error"] == "" {
			t.Errorf("%s: %d %v, want %d with an error", c.body, status, m, c.status)
		}
	}
	if status, m := f.get("/v1/arms"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/arms: %d %v", status, m)
	}
}

func (f *fixture) postInto(path string, body, into any) {
	f.t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(f.http.URL+path, "application/json", strings.NewReader(string(b)))
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		f.t.Fatalf("%s %s: %d %s", path, b, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		f.t.Fatal(err)
	}
}

// TestDashboard runs a sidecar with its sampler against a real Redis and
// in-process Kafka, and checks each panel of GET /v1/dashboard against
// values computed here: the model's counters, the click rate of the events
// folded between two samples, the consumer lag, the last flush, the
// simulator's rates and this test's own recommendation traffic.
func TestDashboard(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	_, _, arms := shopModel(t, c, "shop")
	var events int64
	var rewards float64
	for _, a := range arms {
		events, rewards = events+a.N(), rewards+a.Rewards()
	}
	_, prod, _ := kafka(t)
	for i := 0; i < 30; i++ {
		if err := prod.ProduceSync(ctx, &kgo.Record{Topic: sidecar.DefaultTopic, Key: []byte(strconv.Itoa(i)), Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	admin := kadm.NewClient(prod)
	ends, err := admin.ListEndOffsets(ctx, sidecar.DefaultTopic)
	if err != nil {
		t.Fatal(err)
	}
	end := func(p int32) int64 { o, _ := ends.Lookup(sidecar.DefaultTopic, p); return o.Offset }
	// Partition 0 is 2 behind, 1 is caught up, 2 was never flushed.
	wantLag := 2 + end(2)
	root := store.RootKey("shop")
	hset := func(kv ...string) {
		t.Helper()
		if err := c.Do(ctx, c.B().Hset().Key(root).FieldValue().FieldValue(kv[0], kv[1]).FieldValue(kv[2], kv[3]).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	hset(store.OffsetField(sidecar.DefaultTopic, 0), store.FormatOffset(end(0)-2), store.OffsetField(sidecar.DefaultTopic, 1), store.FormatOffset(end(1)))
	if err := store.WriteFlushRecord(ctx, c, "shop", store.FlushRecord{AtMS: 1764000000000, MS: 12.5, Arms: 7, Events: 123}); err != nil {
		t.Fatal(err)
	}

	sim := sidecar.SimulationStats{Visits: 4321, CTR: map[string]float64{"linucb": 0.12, "random": 0.05, "oracle": 0.2}}
	s := sidecar.New(sidecar.Config{Redis: c, Model: "shop", Admin: admin, BoardInterval: 50 * time.Millisecond,
		Simulation: func() sidecar.SimulationStats { return sim }})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Error(err)
		}
	})
	base := "http://" + ln.Addr().String()
	get := func(path string) sidecar.DashboardResponse {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, raw)
		}
		var d sidecar.DashboardResponse
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// poll reads the dashboard until ok holds (the sampler runs every 50 ms).
	poll := func(what string, ok func(sidecar.DashboardResponse) bool) sidecar.DashboardResponse {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d := get("/v1/dashboard")
			if ok(d) {
				return d
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(d)
				t.Fatalf("%s: the dashboard never showed it: %s", what, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	d := poll("two samples", func(d sidecar.DashboardResponse) bool { return len(d.CTR.Points) >= 2 })
	tr := d.Trainer
	if d.Model != "shop" || d.Products != len(arms) || tr.Events != events || math.Abs(tr.Rewards-rewards) > 1e-9 || tr.DLQ != 0 {
		t.Fatalf("model %s products %d events %d rewards %v dlq %d; want shop, %d, %d, %v, 0", d.Model, d.Products, tr.Events, tr.Rewards, tr.DLQ, len(arms), events, rewards)
	}
	if tr.Lag == nil || *tr.Lag != wantLag {
		t.Fatalf("lag %v, want %d", tr.Lag, wantLag)
	}
	if tr.FlushAtMS != 1764000000000 || *tr.FlushMS != 12.5 || *tr.FlushArms != 7 || *tr.FlushEvents != 123 {
		t.Fatalf("last flush %+v", tr)
	}
	if p := d.CTR.Points[len(d.CTR.Points)-1]; p.Observed != nil || *p.Linucb != 0.12 || *p.Random != 0.05 || *p.Oracle != 0.2 {
		t.Fatalf("no event folded since the start: CTR point %+v, want observed null and the simulator's rates", p)
	}
	if d.Simulator == nil || d.Simulator.Visits != 4321 {
		t.Fatalf("simulator %+v", d.Simulator)
	}

	// 100 events with 37 rewards folded, 3 dead-lettered: the rolling click
	// rate is 0.37 (fewer than the window's 1,000 events since the start).
	w := store.Write{Model: "shop", Features: spec.Reference().Names(), Groups: spec.Reference().Groups(), Lambda: 1,
		Events: 100, Rewards: 37, Invalid: 3}
	if _, err := w.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	d = poll("the folded events", func(d sidecar.DashboardResponse) bool { return d.Trainer.Events == events+100 })
	if p := d.CTR.Points[len(d.CTR.Points)-1]; p.Observed == nil || math.Abs(*p.Observed-0.37) > 1e-12 {
		t.Fatalf("observed CTR %v, want 0.37", p.Observed)
	}
	if d.Trainer.DLQ != 3 || d.Trainer.EventsPerS == nil || *d.Trainer.EventsPerS <= 0 {
		t.Fatalf("dlq %d, events/s %v", d.Trainer.DLQ, d.Trainer.EventsPerS)
	}

	// 20 recommendations, then wait until their second is complete.
	x := make([]float64, 15)
	x[0], x[3] = 0.5, 1
	for i := 0; i < 20; i++ {
		resp, err := http.Post(base+"/v1/recommend", "application/json", strings.NewReader(`{"context": `+mustJSON(x)+`}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("recommend: %d", resp.StatusCode)
		}
	}
	d = poll("the recommendations", func(d sidecar.DashboardResponse) bool { return d.Serving.RPS*10 >= 20 })
	if sv := d.Serving; math.Abs(sv.RPS-2) > 1e-9 || sv.P50MS == nil || sv.P99MS == nil || *sv.P50MS <= 0 || *sv.P99MS < *sv.P50MS || sv.Errors != 0 {
		t.Fatalf("serving %+v: want 2 requests/s (20 in 10 s), p50 ≤ p99, no errors", sv)
	}
	if len(d.Serving.Points) == 0 || !slices.IsSortedFunc(d.Serving.Points, func(a, b sidecar.ServingPoint) int { return int(a.T - b.T) }) {
		t.Fatalf("serving points %+v", d.Serving.Points)
	}

	resp, err := http.Get(base + "/v1/dashboard?model=nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown model: %d", resp.StatusCode)
	}
}

// TestPage: the page and its assets are served from the binary.
func TestPage(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	for _, c := range []struct {
		path, ctype, contains string
		status                int
	}{
		{"/", "text/html", "/ui/app.js", 200},
		{"/ui/app.js", "javascript", "/v1/dashboard", 200},
		{"/ui/app.css", "text/css", "{", 200},
		{"/ui/nope.js", "", "", 404},
	} {
		resp, err := http.Get(f.http.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.Contains(resp.Header.Get("Content-Type"), c.ctype) || !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: %d %s, %d bytes; want %d %s containing %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), c.status, c.ctype, c.contains)
		}
	}
}
