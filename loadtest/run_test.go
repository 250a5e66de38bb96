package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
)

// sane fails the test unless r ran want requests (if > 0) without errors and
// has an ordered latency summary and a positive throughput.
func sane(t *testing.T, r Result, want int64) {
	t.Helper()
	p := r.Percentiles()
	if r.Errors != 0 || len(r.ErrorKinds) != 0 {
		t.Errorf("%s: %d errors: %v", r.Target, r.Errors, r.ErrorKinds)
	}
	if (want > 0 && r.Requests != want) || r.Requests <= 0 || int64(r.Latency.Count()) != r.Requests {
		t.Errorf("%s: %d requests, %d latencies, want %d", r.Target, r.Requests, r.Latency.Count(), want)
	}
	if !(0 < p.Min && p.Min <= p.P50 && p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
		t.Errorf("%s: latency summary out of order: %+v", r.Target, p)
	}
	if !(r.RPS > 0) || r.Elapsed <= 0 {
		t.Errorf("%s: %v requests/s in %v", r.Target, r.RPS, r.Elapsed)
	}
}

// TestRunEveryTarget runs a short load test of each target against a real
// redis-server, on a synthetic reference-shop model that must be deleted
// afterwards.
func TestRunEveryTarget(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	var out bytes.Buffer
	targets := []string{TargetRedis, TargetFCall, TargetClientSide, TargetPing}
	rep, err := Run(ctx, Config{RedisURL: srv.URL(), Model: "lt", Targets: targets, Clients: 4, Requests: 300,
		Products: 60, Alpha: 0.1, Seed: 3, Out: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != len(targets) || rep.Products != 60 || rep.Dim != 15 || rep.Groups != 4 || !rep.Synthetic {
		t.Fatalf("report: %+v", rep)
	}
	for i, r := range rep.Results {
		if r.Target != targets[i] {
			t.Errorf("result %d is %s, want %s", i, r.Target, targets[i])
		}
		sane(t, r, 300)
		// Redis time per request: positive and, since every request waits
		// for it, below the mean latency.
		if !(r.ServerUS > 0) || r.ServerUS > float64(r.Latency.Mean())/1e3 {
			t.Errorf("%s: redis time %.1f µs per request, mean latency %v", r.Target, r.ServerUS, r.Latency.Mean())
		}
	}
	if scripts, ping := rep.Results[0].ServerUS, rep.Results[3].ServerUS; scripts < 5*ping {
		t.Errorf("scoring 60 products costs Redis %.1f µs, PING %.1f µs: implausible", scripts, ping)
	}
	text := out.String()
	for _, want := range []string{"====== redis: EVALSHA_RO", "====== fcall: FCALL_RO", "====== client-side", "====== ping: PING",
		"300 requests in", "4 clients, pipeline 1, closed loop", "60 products, d=15, 4 one-hot groups", "compare: ratio to redis"} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	if n, err := c.Do(ctx, c.B().Dbsize().Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("after the run the server holds %d keys (%v), want the synthetic model deleted", n, err)
	}
}

// TestRunVariants covers a model without groups and with candidate lists,
// pipelining, the open loop, warm-up, a duration, JSON and CSV output, and an
// existing model kept from a previous run.
func TestRunVariants(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()

	var js bytes.Buffer
	rep, err := Run(ctx, Config{RedisURL: srv.URL(), Targets: []string{TargetFCall, TargetRedis, TargetClientSide},
		Clients: 3, Requests: 200, Pipeline: 4, Products: 40, Dim: 9, Nonzero: 4, Candidates: 7, K: 10,
		Alpha: 0.5, Keep: true, Format: FormatJSON, Out: &js})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		sane(t, r, 200)
	}
	lines := 0
	sc := bufio.NewScanner(&js)
	for sc.Scan() {
		var obj struct {
			Target    string             `json:"target"`
			Requests  int64              `json:"requests"`
			Errors    *int64             `json:"errors"`
			RPS       float64            `json:"rps"`
			LatencyMS map[string]float64 `json:"latency_ms"`
			VS        struct {
				Target string  `json:"target"`
				RPS    float64 `json:"rps"`
			} `json:"vs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("line %d: %v: %s", lines+1, err, sc.Bytes())
		}
		if obj.Target != rep.Results[lines].Target || obj.Requests != 200 || obj.Errors == nil || *obj.Errors != 0 ||
			obj.RPS <= 0 || obj.VS.Target != TargetFCall || obj.VS.RPS <= 0 {
			t.Errorf("line %d: %s", lines+1, sc.Bytes())
		}
		for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
			if obj.LatencyMS[k] <= 0 {
				t.Errorf("line %d: latency_ms.%s = %v", lines+1, k, obj.LatencyMS[k])
			}
		}
		if !(obj.LatencyMS["p50"] <= obj.LatencyMS["p99"] && obj.LatencyMS["p99"] <= obj.LatencyMS["max"]) {
			t.Errorf("line %d: percentiles out of order: %v", lines+1, obj.LatencyMS)
		}
		lines++
	}
	if lines != 3 {
		t.Fatalf("%d JSON lines, want 3:\n%s", lines, js.String())
	}

	// The kept model, tested as an existing model: open loop with warm-up
	// and a duration, CSV.
	meta, err := store.ReadMeta(ctx, c, rep.Model)
	if err != nil || meta.Arms != 40 || meta.Dim != 9 || meta.Groups != nil {
		t.Fatalf("kept model %s: %+v, %v", rep.Model, meta, err)
	}
	var cs bytes.Buffer
	rep2, err := Run(ctx, Config{RedisURL: srv.URL(), Model: rep.Model, Targets: []string{TargetPing, TargetRedis},
		Clients: 2, Duration: 400 * time.Millisecond, Warmup: 100 * time.Millisecond, Rate: 400, Format: FormatCSV, Out: &cs})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep2.Results {
		sane(t, r, 0)
		// 400/s for 0.4 s is 160 requests, give or take the last one.
		if r.Requests < 155 || r.Requests > 161 || r.Lag.Count() == 0 {
			t.Errorf("%s: %d requests (want about 160) and %d lags at 400/s for 0.4s", r.Target, r.Requests, r.Lag.Count())
		}
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(rows) != 3 || rows[0][0] != "target" || rows[1][0] != TargetPing || rows[2][0] != TargetRedis || rows[1][2] != "0" {
		t.Fatalf("csv: %v\n%s", err, cs.String())
	}
	if _, err := store.ReadMeta(ctx, c, rep.Model); err != nil {
		t.Fatalf("an existing model must not be deleted: %v", err)
	}

	// Errors of the set-up.
	if _, err := Run(ctx, Config{RedisURL: srv.URL(), Model: "nosuch"}); !errors.Is(err, store.ErrNoModel) {
		t.Errorf("missing model: %v", err)
	}
	if _, err := Run(ctx, Config{RedisURL: srv.URL(), Model: rep.Model, Candidates: 41}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("more candidates than products: %v", err)
	}
}

// TestRunHTTP load-tests a sidecar serving the same Redis, next to direct
// EVALSHA: zero errors, every answer checked against the Go reference.
func TestRunHTTP(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	sc := sidecar.New(sidecar.Config{Redis: srv.Client()})
	if err := sc.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sc.Handler())
	defer hs.Close()
	for _, cands := range []int{0, 7} {
		rep, err := Run(ctx, Config{RedisURL: srv.URL(), SidecarURL: hs.URL, Targets: []string{TargetRedis, TargetHTTP, TargetHTTPPing},
			Products: 40, Clients: 3, Requests: 150, Candidates: cands})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			sane(t, r, 150)
			// Nested: Redis's time within the sidecar's Redis call, within
			// its handler, within what the client saw.
			mean := float64(r.Latency.Mean()) / 1e3
			if r.Target == TargetHTTP && !(r.ServerUS > 0 && r.ServerUS <= r.SidecarRedisUS && r.SidecarRedisUS <= r.SidecarUS && r.SidecarUS <= mean) {
				t.Errorf("http: redis %.1f µs, sidecar's redis call %.1f µs, sidecar %.1f µs, mean latency %.1f µs: want them increasing",
					r.ServerUS, r.SidecarRedisUS, r.SidecarUS, mean)
			}
			if r.Target != TargetHTTP && (r.SidecarUS != 0 || r.SidecarRedisUS != 0) {
				t.Errorf("%s: sidecar time %v/%v, want none", r.Target, r.SidecarUS, r.SidecarRedisUS)
			}
		}
	}
	// A sidecar that is not there: every request is a connection error.
	rep, err := Run(ctx, Config{RedisURL: srv.URL(), SidecarURL: "http://127.0.0.1:1", Targets: []string{TargetHTTP}, Products: 5, Requests: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Results[0]; r.Errors != 5 || r.ErrorKinds[KindConnection] != 5 {
		t.Errorf("no sidecar: %d errors %v, want 5 connection errors", r.Errors, r.ErrorKinds)
	}
}

// TestRunLeanClients runs every target through lean clients — RESP and
// HTTP/1.1 written by hand — against a real redis-server (as an ACL user,
// pipelined and not) and a sidecar: zero errors, every answer checked
// against the Go reference; then a sidecar that is not there and a wrong
// password fail as connection errors.
func TestRunLeanClients(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	if err := c.Do(ctx, c.B().AclSetuser().Username("lt").Rule("on", ">pw", "~*", "+@all").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	sc := sidecar.New(sidecar.Config{Redis: srv.Client()})
	if err := sc.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sc.Handler())
	defer hs.Close()
	userURL := strings.Replace(srv.URL(), "redis://", "redis://lt:pw@", 1)
	for _, tc := range []struct {
		url      string
		targets  []string
		pipeline int
		cands    int
	}{
		{srv.URL(), []string{TargetRedis, TargetFCall, TargetPing, TargetHTTP, TargetHTTPPing, TargetClientSide}, 1, 0},
		{userURL, []string{TargetRedis, TargetFCall, TargetPing}, 4, 0},
		{userURL, []string{TargetRedis, TargetHTTP}, 1, 9},
	} {
		rep, err := Run(ctx, Config{RedisURL: tc.url, SidecarURL: hs.URL, Client: ClientLean, Targets: tc.targets,
			Products: 40, Clients: 3, Requests: 120, Pipeline: tc.pipeline, Candidates: tc.cands, Alpha: 0.1})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			sane(t, r, 120)
		}
	}
	rep, err := Run(ctx, Config{RedisURL: srv.URL(), SidecarURL: "http://127.0.0.1:1", Client: ClientLean,
		Targets: []string{TargetHTTP, TargetHTTPPing}, Products: 5, Requests: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Errors != 5 || r.ErrorKinds[KindConnection] != 5 {
			t.Errorf("no sidecar, %s: %d errors %v, want 5 connection errors", r.Target, r.Errors, r.ErrorKinds)
		}
	}
	wrongURL := strings.Replace(srv.URL(), "redis://", "redis://lt:nope@", 1)
	dial, err := leanRedisDialer(wrongURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := dial(ctx); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("a wrong password: %v, want an AUTH error", err)
	}
	if _, err := leanRedisDialer("unix:///tmp/redis.sock"); !errors.Is(err, ErrBadConfig) {
		t.Errorf("a unix socket URL: %v, want ErrBadConfig", err)
	}
	if err := (Config{RedisURL: srv.URL(), Client: "fast"}).Validate(); !errors.Is(err, ErrBadConfig) {
		t.Errorf("client \"fast\": %v, want ErrBadConfig", err)
	}
}

// TestRunCountsServerErrors deletes the model's metadata field under a run
// of an existing model: every answer is then a BADMODEL or NOMODEL error.
func TestRunCountsServerErrors(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := context.Background()
	rep, err := Run(ctx, Config{RedisURL: srv.URL(), Model: "e", Products: 5, Dim: 3, Keep: true, Requests: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Break the format version: the scripts answer BADMODEL.
	if err := c.Do(ctx, c.B().Hset().Key(store.RootKey(rep.Model)).FieldValue().FieldValue("format", "99").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Run reads the metadata first and refuses the model ...
	if _, err := Run(ctx, Config{RedisURL: srv.URL(), Model: rep.Model}); !errors.Is(err, store.ErrBadModel) {
		t.Fatalf("broken model: %v", err)
	}
	// ... so drive a phase directly, against the catalogue of the good model.
	cat := &Catalog{Model: rep.Model, Dim: 3, IDs: []string{"p0", "p1", "p2", "p3", "p4"}}
	cat.buildIndex()
	leanDial, err := leanRedisDialer(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{TargetRedis, TargetFCall} {
		for _, dial := range []func(context.Context) (net.Conn, *bufio.Reader, error){nil, leanDial} {
			p := &phase{name: name, label: name, clients: []rueidis.Client{c}, cat: cat, nonzero: 2, pipeline: 2, requests: 10,
				newTarget: func() target { return newTarget(name, cat, 5, 0.1, nil, "", dial) }}
			res, err := p.run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 10 || res.Errors != 10 || res.ErrorKinds["BADMODEL"] != 10 {
				t.Errorf("%s (lean %v) on a broken model: %d requests, %d errors %v; want 10 BADMODEL", name, dial != nil, res.Requests, res.Errors, res.ErrorKinds)
			}
		}
	}
}

// TestRunCancelled cancels a long run: Run returns the context's error and
// still deletes its synthetic model.
func TestRunCancelled(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := Run(ctx, Config{RedisURL: srv.URL(), Products: 20, Duration: time.Hour, Targets: []string{TargetRedis}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled run: %v", err)
	}
	if n, err := c.Do(context.Background(), c.B().Dbsize().Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("after a cancelled run the server holds %d keys (%v)", n, err)
	}
}

// TestLeanClientCancelled: a lean client waiting for a server that never
// answers returns, with an error, once its context is cancelled.
func TestLeanClientCancelled(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c // held open, never answered
		}
	}()
	dial, err := leanRedisDialer("redis://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tgt := &leanPingTarget{leanConn: leanConn{dial: dial}}
	defer tgt.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	errs := make([]error, 1)
	done := make(chan struct{})
	go func() {
		tgt.do(ctx, nil, []*request{{}}, errs)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the lean client was not interrupted by the cancellation")
	}
	if errs[0] == nil {
		t.Fatal("a request to a silent server succeeded")
	}
	select {
	case c := <-accepted:
		c.Close()
	default:
	}
}

// TestRunHTTPLocal load-tests a sidecar scoring locally: zero errors, every
// answer checked against the Go reference, and every measured request
// scored from the sidecar's copy (LocalShare, from its metrics).
func TestRunHTTPLocal(t *testing.T) {
	srv := redistest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	sc := sidecar.New(sidecar.Config{Redis: srv.Client(), Scoring: sidecar.ScoringLocal, LocalPoll: 2 * time.Millisecond})
	if err := sc.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for _, cands := range []int{0, 7} {
		rep, err := Run(ctx, Config{RedisURL: srv.URL(), LocalURL: "http://" + ln.Addr().String(), Targets: []string{TargetRedis, TargetHTTPLocal},
			Products: 40, Clients: 3, Requests: 150, Candidates: cands})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Results {
			sane(t, r, 150)
			if r.Target == TargetHTTPLocal && r.LocalShare != 1 {
				t.Errorf("candidates %d: %v of the requests scored locally, want all", cands, r.LocalShare)
			}
		}
	}
}
