package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/tools/demo"
)

// lockedBuffer is a bytes.Buffer that one goroutine may write while
// another reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestReadmeDemo starts the demo in-process as make demo does (the
// project's redis.conf, ACL users with fresh passwords, in-process Kafka,
// trainer, sidecar; 300 visits, then holding) and runs the README's
// examples exactly as a newcomer pastes them in another shell after
// ". ./demo.env" (the file the demo writes), from the repository's root:
// the quick start's lines; the calling-convention examples (redis-cli,
// Python, Node.js, Java), checked against a brute-force top 5 of
// linucb.Score over the arms read back from Redis; the sidecar's three
// forms of request, checked against the same brute force for the context
// each encodes;
// the dashboard's data endpoints (model demo, 202 products, the 20 busiest
// busiest first); and the feedback example, which the demo's trainer must
// fold into product p042's arm (n + 1, b + x for the README's attributes).
func TestReadmeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	readme := readReadme(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "demo.env")
	summary := make(chan demo.Summary, 1)
	var logs lockedBuffer // the demo writes to it until it stops
	cfg := demo.Config{Visits: 300, Rate: -1, Quiet: true, Hold: true, Listen: "127.0.0.1:0", Dir: dir, RedisConf: "../../redis.conf",
		EnvFile: envFile, Out: &logs, OnSummary: func(s demo.Summary) { summary <- s }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := demo.Run(ctx, cfg)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo: %v", err)
		}
		if _, err := os.Stat(envFile); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the demo left %s behind: %v", envFile, err)
		}
	})
	select {
	case sum := <-summary:
		// At least one event per visit (impressions send up to five), and
		// all of them trained.
		if sum.Visits != 300 || sum.Sent < 300 || sum.EventsTrained != int64(sum.Sent) {
			t.Fatalf("demo: %d visits, sent %d, trained %d: the model may still change\n%s", sum.Visits, sum.Sent, sum.EventsTrained, logs.String())
		}
	case err := <-done:
		done <- err
		t.Fatalf("demo: %v\n%s", err, logs.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("demo: no summary within 3 minutes\n%s", logs.String())
	}

	// The environment the demo hands a newcomer: one export line, printed
	// and in the file.
	raw, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "export "); ok {
			if !strings.Contains(logs.String(), line) {
				t.Errorf("the demo did not print %q:\n%s", line, logs.String())
			}
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
		}
	}
	if !strings.HasPrefix(env["REDBANDIT_REDIS"], "redis://rb-serve:") || env["REDBANDIT_MODEL"] != "demo" || env["REDBANDIT_SIDECAR_URL"] == "" {
		t.Fatalf("the demo's %s:\n%s", envFile, raw)
	}
	prelude := ". " + envFile + "\n"
	shell := func(what, sh string) []byte {
		t.Helper()
		sh = strings.ReplaceAll(sh, "bin/redbandit", bin)
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", prelude+sh)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "no_proxy=127.0.0.1,localhost", "NO_PROXY=127.0.0.1,localhost") // loopback, even behind a proxy
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the README's %s: %v\n%s", what, err, out)
		}
		return out
	}

	// Quick start: ". ./demo.env", then bin/redbandit model.
	qs := readmeBlock(t, readme, "The calling-convention, sidecar and dashboard examples below run as pasted", "sh")
	if out := shell("quick-start lines", replaceOnce(t, qs, ". ./demo.env", "")); !strings.Contains(string(out), "products  202") {
		t.Fatalf("the quick start's bin/redbandit model printed:\n%s", out)
	}

	// The brute-force reference, from the arms as they are in Redis.
	serve, err := store.Dial(env["REDBANDIT_REDIS"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(serve.Close)
	rctx := context.Background()
	meta, err := store.ReadMeta(rctx, serve, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := store.ReadProducts(rctx, serve, "demo", meta.Arms)
	if err != nil || len(ids) != 202 {
		t.Fatalf("products of model demo: %d, %v", len(ids), err)
	}
	stored, err := store.ReadArms(rctx, serve, "demo", meta.Dim, meta.Lambda, ids)
	if err != nil {
		t.Fatal(err)
	}
	params := make([]linucb.Params, len(stored))
	for i, a := range stored {
		if params[i], err = a.Arm.Solve(); err != nil {
			t.Fatal(err)
		}
	}
	// Which products top the README's context depends on the run: whether
	// the exclusions change the answer is TestReadmeExamples's to check.
	want := func(exclude ...string) []string { return bruteTop(readmeContext, 0.1, 5, ids, params, exclude...) }

	// Calling convention.
	fields := strings.Fields(string(shell("redis-cli lines", readmeBlock(t, readme, "\n### redis-cli\n", "sh"))))
	if len(fields) != 20 {
		t.Fatalf("the README's redis-cli lines printed %q, want two replies of 10 values", fields)
	}
	sameItems(t, "redis-cli FCALL_RO", fields[:10], want())
	sameItems(t, "redis-cli EVALSHA_RO … EXCLUDE 2 p029 p054", fields[10:], want("p029", "p054"))
	for _, l := range exampleLangs {
		t.Run(l.name, func(t *testing.T) {
			exampleRuntime(t, l.name, l.require)
			sameItems(t, l.name+" … EXCLUDE 1 p029", runExample(t, l.name, readmeBlock(t, readme, l.heading, l.lang), prelude), want("p029"))
		})
	}

	// The sidecar's examples, against the demo's sidecar.
	host := strings.TrimPrefix(env["REDBANDIT_SIDECAR_URL"], "http://")
	curl := func(block string, calls int) []byte {
		t.Helper()
		if n := strings.Count(block, "localhost:8080/"); n != calls || strings.Count(block, "curl -s ") != calls {
			t.Fatalf("README example: %d curl calls to localhost:8080, want %d:\n%s", n, calls, block)
		}
		return shell("curl lines", strings.ReplaceAll(block, "localhost:8080", host))
	}
	type answer struct {
		Model   string       `json:"model"`
		Items   []store.Item `json:"items"`
		EventID string       `json:"event_id"`
		Error   string       `json:"error"`
	}
	var answers []answer
	dec := json.NewDecoder(bytes.NewReader(curl(readmeBlock(t, readme, "\n## HTTP sidecar\n", "sh"), 3)))
	for dec.More() {
		var a answer
		if err := dec.Decode(&a); err != nil {
			t.Fatal(err)
		}
		answers = append(answers, a)
	}
	if len(answers) != 3 {
		t.Fatalf("%d answers to the README's three requests: %+v", len(answers), answers)
	}
	sp := spec.Reference()
	dense := []float64{0.33, 0.5, 0.5, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0}
	named := make([]float64, len(dense))
	for _, f := range []string{"age", "gender_F", "traffic_source_Search", "morning", "weekend"} {
		named[slices.Index(sp.Names(), f)] = 1
	}
	named[0] = 0.33
	attrs, err := sp.Encode(map[string]any{"age": 34.0, "latitude": -37.8, "longitude": 145.0, "gender": "F",
		"traffic_source": "Search", "timestamp": "2026-01-03T08:15:00+11:00"})
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range []store.Query{{Context: dense}, {Context: named}, {Context: attrs, Exclude: []string{"p029"}}} {
		q.K, q.Alpha = 5, 0.1
		want := bruteTop(q.Context, q.Alpha, q.K, ids, params, q.Exclude...)
		got := answers[i]
		if got.Error != "" || got.Model != "demo" || len(got.EventID) != 32 || 2*len(got.Items) != len(want) {
			t.Fatalf("README request %d: %+v, want the items %v", i+1, got, want)
		}
		var items []string
		for _, it := range got.Items {
			items = append(items, it.ID, strconv.FormatFloat(it.Score, 'g', -1, 64))
		}
		sameItems(t, fmt.Sprintf("README request %d", i+1), items, want)
	}

	// The dashboard's data endpoints.
	dec = json.NewDecoder(bytes.NewReader(curl(readmeBlock(t, readme, "The data endpoints are plain JSON:", "sh"), 2)))
	var board sidecar.DashboardResponse
	var busiest sidecar.ArmsResponse
	if err := dec.Decode(&board); err != nil || board.Model != "demo" || board.Products != 202 {
		t.Fatalf("the README's dashboard example: %+v, %v", board, err)
	}
	if err := dec.Decode(&busiest); err != nil || busiest.Model != "demo" || busiest.Products != 202 || len(busiest.Arms) != 20 ||
		!slices.IsSortedFunc(busiest.Arms, func(a, b sidecar.ArmDetail) int { return int(b.Events - a.Events) }) {
		t.Fatalf("the README's arms example: %+v, %v", busiest, err)
	}

	// Feedback: 202 {"accepted":1}, then the demo's trainer folds it into
	// p042's arm: n + 1 and b + r·x with r = 1 and x the attributes' encoding.
	// The demo's sidecar logged the examples' recommendations as
	// decisions: their zeros come when the reward wait ends.
	settled(t, serve, meta, ids)
	before, err := store.ReadArms(rctx, serve, "demo", meta.Dim, meta.Lambda, []string{"p042"})
	if err != nil {
		t.Fatal(err)
	}
	if out := curl(readmeBlock(t, readme, "Feedback (with `--brokers`)", "sh"), 1); strings.TrimSpace(string(out)) != `{"accepted":1}` {
		t.Fatalf("the README's feedback example answered %q", out)
	}
	var after []store.StoredArm
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after, err = store.ReadArms(rctx, serve, "demo", meta.Dim, meta.Lambda, []string{"p042"}); err != nil {
			t.Fatal(err)
		}
		if after[0].Arm.N() != before[0].Arm.N() {
			break
		}
	}
	if after[0].Arm.N() != before[0].Arm.N()+1 {
		t.Fatalf("p042 has %d events after the README's feedback, want %d", after[0].Arm.N(), before[0].Arm.N()+1)
	}
	b0, b1 := before[0].Arm.B(), after[0].Arm.B()
	for i, v := range attrs {
		if math.Abs(b1[i]-b0[i]-v) > 1e-12 {
			t.Fatalf("p042's b[%d] went from %v to %v, want + %v", i, b0[i], b1[i], v)
		}
	}

	readmeRankAndReward(t, readme, serve, meta, ids, curl)
}

// readmeRankAndReward runs the README's rank-and-reward lines against the
// demo's sidecar, which logs its decisions, and its joiner (impressions
// above, the demo's default): the reward is accepted, and the demo's
// trainer folds exactly what the context form of the same reward would —
// the clicked (first) product's arm gets n + 1 and b + x for the README's
// context — and nothing else: with the click at the top, no product above
// it gets a zero when the reward wait ends.
func readmeRankAndReward(t *testing.T, readme string, serve rueidis.Client, meta store.Meta, ids []string,
	curl func(block string, calls int) []byte) {
	t.Helper()
	ctx := context.Background()
	before := settled(t, serve, meta, ids)
	block := readmeBlock(t, readme, "\n### Rank and reward\n", "sh")
	out := strings.Fields(string(curl(block+"\necho \" $CLICKED\"\n", 2)))
	if len(out) != 2 || out[0] != `{"accepted":1}` {
		t.Fatalf("the README's reward by event id answered %q, want {\"accepted\":1} and the clicked product", out)
	}
	clicked := out[1]
	x := readmeRankContext(t, block)
	arms := func() map[string]store.StoredArm {
		t.Helper()
		got, err := store.ReadArms(ctx, serve, "demo", meta.Dim, meta.Lambda, ids)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]store.StoredArm{}
		for _, a := range got {
			m[a.ID] = a
		}
		return m
	}
	old := map[string]store.StoredArm{}
	for _, a := range before {
		old[a.ID] = a
	}
	if _, ok := old[clicked]; !ok {
		t.Fatalf("the README's rank answered product %q, not in model demo", clicked)
	}
	var after map[string]store.StoredArm
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if after = arms(); after[clicked].Arm.N() != old[clicked].Arm.N() {
			break
		}
	}
	// The demo's reward wait ends within a second; its zeros (none here)
	// would be folded by then.
	time.Sleep(demo.DefaultRewardWait + 2*time.Second)
	after = arms()
	for _, id := range ids {
		a, b := old[id].Arm, after[id].Arm
		if id != clicked {
			if b.N() != a.N() {
				t.Errorf("product %s: %d events after the README's reward, want %d (no zero above a top click)", id, b.N(), a.N())
			}
			continue
		}
		if b.N() != a.N()+1 {
			t.Fatalf("%s has %d events after the README's reward, want %d", id, b.N(), a.N()+1)
		}
		for i, v := range x {
			if math.Abs(b.B()[i]-a.B()[i]-v) > 1e-12 {
				t.Fatalf("%s's b[%d] went from %v to %v, want + %v", id, i, a.B()[i], b.B()[i], v)
			}
		}
	}
}

// settled returns the demo model's arms once they stay the same over more
// than the demo's reward wait and a flush: the zeros of decisions without
// a reward are folded by then.
func settled(t *testing.T, serve rueidis.Client, meta store.Meta, ids []string) []store.StoredArm {
	t.Helper()
	read := func() []store.StoredArm {
		t.Helper()
		arms, err := store.ReadArms(context.Background(), serve, "demo", meta.Dim, meta.Lambda, ids)
		if err != nil {
			t.Fatal(err)
		}
		return arms
	}
	prev := read()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(demo.DefaultRewardWait + time.Second)
		cur := read()
		same := true
		for i := range cur {
			same = same && cur[i].Arm.N() == prev[i].Arm.N()
		}
		if same {
			return cur
		}
		prev = cur
	}
	t.Fatal("the demo's model kept changing for 30s after the visits")
	return nil
}

// readmeRankContext returns the context of the rank-and-reward block's
// POST /v1/recommend.
func readmeRankContext(t *testing.T, block string) []float64 {
	t.Helper()
	_, rest, ok := strings.Cut(block, `{"context": `)
	end := strings.Index(rest, "]")
	var x []float64
	if !ok || end < 0 || json.Unmarshal([]byte(rest[:end+1]), &x) != nil || len(x) == 0 {
		t.Fatalf("no context in the README's rank-and-reward block:\n%s", block)
	}
	return x
}
