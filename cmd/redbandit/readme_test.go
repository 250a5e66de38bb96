package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/tools/demo"
)

// readReadme returns the text of the module's README.md.
func readReadme(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// readmeBlock returns the first fenced code block of language lang after
// the text marker (a heading, say) in README.md.
func readmeBlock(t *testing.T, readme, marker, lang string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md has no %s block after %q", lang, marker)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the %s block after %q is not closed", lang, marker)
	}
	return block
}

// replaceOnce replaces the one occurrence of old in s, failing the test if
// there is not exactly one (the README changed: update this test with it).
func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	if n := strings.Count(s, old); n != 1 {
		t.Fatalf("README example: %q occurs %d times, want once", old, n)
	}
	return strings.Replace(s, old, new, 1)
}

// readmeContext is the context of the README's calling-convention
// examples: a woman of scaled age 0.3 from Facebook on a weekend morning,
// in the reference spec's feature order.
var readmeContext = []float64{0.3, 0.5, 0.7, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0}

// exampleLangs are the README's calling-convention examples that run in
// another language: the README's heading, the fenced block's language, the
// environment variable that makes a missing runtime a failure, and how the
// block runs (cmd.Dir is the repository's root: the examples read
// lua/recommend.lua).
var exampleLangs = []struct {
	name, heading, lang, require string
}{
	{"python", "\n### Python (redis-py)\n", "python", "REDBANDIT_TEST_PYTHON"},
	{"node", "\n### Node.js (ioredis)\n", "js", "REDBANDIT_TEST_NODE"},
	{"java", "\n### Java (Jedis)\n", "java", "REDBANDIT_TEST_JAVA"},
}

// exampleHint is how to get the README examples' runtimes.
const exampleHint = "bash scripts/deps.sh examples, then . ~/.cache/redbandit/examples.env (REDBANDIT_PYTHON: a python with redis-py; REDBANDIT_NODE_PATH: ioredis; REDBANDIT_JEDIS_CLASSPATH: Jedis and its dependencies)"

// exampleRuntime checks that the runtime of the README's example in lang
// is there: if not, the test fails when the lang's require variable is 1
// (make test sets them), else it is skipped.
func exampleRuntime(t *testing.T, lang, require string) {
	t.Helper()
	var cmd *exec.Cmd
	switch lang {
	case "python":
		cmd = exec.Command(examplePython(), "-c", "import redis")
	case "node":
		cmd = exec.Command("node", "-e", `require("ioredis")`)
		cmd.Env = append(os.Environ(), "NODE_PATH="+os.Getenv("REDBANDIT_NODE_PATH"))
	case "java":
		cmd = exec.Command("bash", "-c", `command -v java >/dev/null && command -v javac >/dev/null && ls $REDBANDIT_JEDIS_CLASSPATH | grep -q 'jedis-[0-9.]*\.jar$'`)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		if os.Getenv(require) == "1" {
			t.Fatalf("%s=1 but the %s example cannot run: %v\n%s\nfix: %s", require, lang, err, out, exampleHint)
		}
		t.Skipf("the %s example's runtime is missing (%s=1 makes this a failure); to run it: %s", lang, require, exampleHint)
	}
}

// runExample runs the README's example block of lang from the repository's
// root, as its section says to, after the shell lines prelude (the
// environment a newcomer has), and returns the id, score pairs it printed.
func runExample(t *testing.T, lang, block, prelude string) []string {
	t.Helper()
	dir := t.TempDir()
	var sh string
	switch lang {
	case "python":
		sh = `"${REDBANDIT_PYTHON:-python3}" ` + filepath.Join(dir, "example.py")
		if err := os.WriteFile(filepath.Join(dir, "example.py"), []byte(block), 0o644); err != nil {
			t.Fatal(err)
		}
	case "node":
		sh = `NODE_PATH="$REDBANDIT_NODE_PATH" node ` + filepath.Join(dir, "recommend.js")
		if err := os.WriteFile(filepath.Join(dir, "recommend.js"), []byte(block), 0o644); err != nil {
			t.Fatal(err)
		}
	case "java":
		sh = `java -cp "$REDBANDIT_JEDIS_CLASSPATH" ` + filepath.Join(dir, "Recommend.java")
		if err := os.WriteFile(filepath.Join(dir, "Recommend.java"), []byte(block), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", prelude+"\n"+sh)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the README's %s example: %v\n%s%s", lang, err, out, stderr.Bytes())
	}
	var got []string
	switch lang {
	case "python": // print(top): [('p054', 0.787…), …]
		for _, m := range regexp.MustCompile(`\('([^']*)', ([^)]*)\)`).FindAllStringSubmatch(string(out), -1) {
			got = append(got, m[1], m[2])
		}
	default: // one "id score" line per product
		got = strings.Fields(string(out))
	}
	if len(got) == 0 {
		t.Fatalf("the README's %s example printed %q", lang, out)
	}
	return got
}

// sameItems fails the test unless got (id, score, …) has want's ids in
// order and its scores within 1e-9 relative.
func sameItems(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values %q, want %q", what, len(got), got, want)
	}
	for i := 0; i < len(want); i += 2 {
		g, err := strconv.ParseFloat(got[i+1], 64)
		w, _ := strconv.ParseFloat(want[i+1], 64)
		if got[i] != want[i] || err != nil || math.Abs(g-w) > 1e-9*math.Abs(w) {
			t.Fatalf("%s: item %d = %s %s, want %s %s", what, i/2, got[i], got[i+1], want[i], want[i+1])
		}
	}
}

// bruteTop returns the top k of the arms (ids in arm order, which breaks
// ties) by linucb.Score for x and α, without the excluded ids, as id,
// score, id, score, ...
func bruteTop(x []float64, alpha float64, k int, ids []string, params []linucb.Params, exclude ...string) []string {
	idx := make([]int, 0, len(ids))
	for a, id := range ids {
		if !slices.Contains(exclude, id) {
			idx = append(idx, a)
		}
	}
	slices.SortStableFunc(idx, func(i, j int) int {
		return -cmp.Compare(linucb.Score(x, params[i], alpha), linucb.Score(x, params[j], alpha))
	})
	var out []string
	for _, a := range idx[:min(k, len(idx))] {
		out = append(out, ids[a], strconv.FormatFloat(linucb.Score(x, params[a], alpha), 'g', -1, 64))
	}
	return out
}

// buildBinary builds bin/redbandit into a scratch directory and returns its
// path, for the README lines that run it.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin", "redbandit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestReadmeExamples runs the README's calling-convention examples as a
// newcomer pastes them — the redis-cli lines, then the Python (redis-py),
// Node.js (ioredis) and Java (Jedis) programs — with REDBANDIT_REDIS
// pointing at a plain redis-server of the test, against a model "demo" of
// the reference shop's dimension whose products p029 and p054 (the README's
// exclusions) are trained to top the README's context; answers are checked
// against a brute-force top 5 of linucb.Score over every product (scores
// within 1e-9 relative). Before each program the script cache is flushed,
// so each must take its NOSCRIPT path (EVAL_RO), and the script is cached
// afterwards.
// TestReadmeDemo runs the same examples against the demo. A program whose
// runtime is missing is skipped, unless REDBANDIT_TEST_PYTHON,
// REDBANDIT_TEST_NODE or REDBANDIT_TEST_JAVA is 1 (make test sets them
// after scripts/deps.sh examples, and REDBANDIT_PYTHON, REDBANDIT_NODE_PATH
// and REDBANDIT_JEDIS_CLASSPATH from ~/.cache/redbandit/examples.env).
func TestReadmeExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs the examples' runtimes")
	}
	readme := readReadme(t)
	srv := redistest.Start(t)
	ctx := context.Background()
	bin := buildBinary(t)

	x := readmeContext
	sp := spec.Reference()
	d, products := sp.Dim(), 100
	rng := rand.New(rand.NewPCG(5, 6))
	w := store.Write{Model: "demo", Features: sp.Names(), Groups: sp.Groups(), Lambda: 1}
	ids := make([]string, products)
	params := make([]linucb.Params, products)
	for a := range products {
		ids[a] = fmt.Sprintf("p%03d", a+1)
		arm := linucb.NewArm(d, 1)
		for range 30 {
			y := make([]float64, d)
			y[0], y[1], y[2] = rng.Float64(), rng.Float64(), rng.Float64()
			for _, g := range sp.Groups() {
				y[g.Features[rng.IntN(len(g.Features))]] = 1
			}
			r := float64(rng.IntN(5) / 4) // clicked one time in five
			if ids[a] == "p029" || ids[a] == "p054" {
				y, r = x, 1 // clicked in the README's context
			}
			if err := arm.Update(y, r); err != nil {
				t.Fatal(err)
			}
		}
		p, err := arm.Solve()
		if err != nil {
			t.Fatal(err)
		}
		params[a] = p
		w.Arms = append(w.Arms, store.ArmWrite{ID: ids[a], Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, srv.Client()); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--redis", srv.URL(), "script", "load"); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	want := func(exclude ...string) []string { return bruteTop(x, 0.1, 5, ids, params, exclude...) }
	if top := want(); !slices.Contains(top, "p029") || !slices.Contains(top, "p054") {
		t.Fatalf("the trained products do not top the README's context: %v", top)
	}
	prelude := "export REDBANDIT_REDIS=" + srv.URL() + "\n"

	// redis-cli: FCALL_RO, then EVALSHA excluding p029 and p054.
	sh := readmeBlock(t, readme, "\n### redis-cli\n", "sh")
	sh = replaceOnce(t, sh, "$(bin/redbandit script sha)", "$("+bin+" script sha)")
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", prelude+sh)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's redis-cli lines: %v\n%s", err, out)
	}
	fields := strings.Fields(string(out))
	if len(fields) != 20 {
		t.Fatalf("the README's redis-cli lines printed %q, want two replies of 10 values", out)
	}
	sameItems(t, "redis-cli FCALL_RO", fields[:10], want())
	sameItems(t, "redis-cli EVALSHA_RO … EXCLUDE 2 p029 p054", fields[10:], want("p029", "p054"))

	c := srv.Client()
	for _, l := range exampleLangs {
		t.Run(l.name, func(t *testing.T) {
			exampleRuntime(t, l.name, l.require)
			if err := c.Do(ctx, c.B().ScriptFlush().Build()).Error(); err != nil {
				t.Fatal(err)
			}
			got := runExample(t, l.name, readmeBlock(t, readme, l.heading, l.lang), prelude)
			sameItems(t, l.name+" … EXCLUDE 1 p029", got, want("p029"))
			cached, err := c.Do(ctx, c.B().ScriptExists().Sha1(lua.RecommendSHA()).Build()).AsIntSlice()
			if err != nil || len(cached) != 1 || cached[0] != 1 {
				t.Fatalf("after the %s example the script is not cached (its NOSCRIPT path did not load it): %v %v", l.name, cached, err)
			}
		})
	}
}

// TestReadmeNumpyHint checks the premise of the Python example's numpy
// hint without numpy: redis-py writes a float by its repr, so a float
// whose repr is numpy 2's ("np.float64(0.3)") reaches the script as that
// text and is refused with BADARG, while the same values as plain floats
// are answered.
func TestReadmeNumpyHint(t *testing.T) {
	if !strings.Contains(readmeBlock(t, readReadme(t), "\n### Python (redis-py)\n", "python"), "x.tolist()") {
		t.Fatal("the README's Python example has no numpy hint (x.tolist())")
	}
	exampleRuntime(t, "python", "REDBANDIT_TEST_PYTHON")
	srv := redistest.Start(t)
	sp := spec.Reference()
	arm := linucb.NewArm(sp.Dim(), 1)
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	w := store.Write{Model: "demo", Features: sp.Names(), Groups: sp.Groups(), Lambda: 1, Arms: []store.ArmWrite{{ID: "p001", Arm: arm, Params: p}}}
	if _, err := w.Apply(context.Background(), srv.Client()); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--redis", srv.URL(), "script", "load"); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	py := `import os, redis
r = redis.Redis.from_url(os.environ["REDBANDIT_REDIS"], decode_responses=True)
class f64(float):  # a float that writes itself as numpy 2's float64 does
    def __repr__(self):
        return "np.float64(%r)" % float(self)
x = [f64(v) for v in [0.3, 0.5, 0.7, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0]]
try:
    r.fcall_ro("rb_recommend", 1, "rb:{demo}", 5, 0.1, *x)
    print("accepted")
except redis.exceptions.ResponseError as e:
    print("refused:", e)
print("plain:", r.fcall_ro("rb_recommend", 1, "rb:{demo}", 5, 0.1, *map(float, x)))
`
	cmd := exec.Command(examplePython(), "-c", py)
	cmd.Env = append(os.Environ(), "REDBANDIT_REDIS="+srv.URL())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "refused: BADARG") || !strings.Contains(string(out), "plain: ['p001', '0.") {
		t.Fatalf("numpy-like floats: %v\n%s", err, out)
	}
}

// examplePython returns the Python interpreter the README's Python example
// runs with: $REDBANDIT_PYTHON, else python3 from PATH.
func examplePython() string {
	return cmp.Or(os.Getenv("REDBANDIT_PYTHON"), "python3")
}

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

// TestReadmeFlagTables checks the flag tables of README.md (global flags)
// and trainer/README.md (the trainer's) against the command line both ways:
// every row's flag exists with the row's environment variable and default,
// and every flag of the command that has an environment variable has a row.
func TestReadmeFlagTables(t *testing.T) {
	app := newApp()
	var trainerFlags []cli.Flag
	for _, c := range app.Commands {
		if c.Name == "trainer" {
			trainerFlags = c.Flags
		}
	}
	raw, err := os.ReadFile("../../trainer/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		doc, text string
		flags     []cli.Flag
	}{{"README.md", readReadme(t), app.Flags}, {"trainer/README.md", string(raw), trainerFlags}} {
		rows := map[string][2]string{} // flag name → env, default
		for _, line := range strings.Split(tc.text, "\n") {
			cells := strings.Split(line, " | ")
			if len(cells) != 3 || !strings.HasPrefix(line, "| `--") {
				continue
			}
			name := strings.Fields(strings.Trim(cells[0], "| `"))[0]
			name = strings.TrimSuffix(strings.TrimPrefix(name, "--"), "`")
			def := strings.TrimSuffix(cells[2], " |")
			if strings.HasPrefix(def, "`") {
				def = strings.Split(def, "`")[1]
			}
			rows[name] = [2]string{strings.Trim(cells[1], "`"), def}
		}
		if len(rows) == 0 {
			t.Fatalf("%s: no flag table found", tc.doc)
		}
		for _, f := range tc.flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok || len(df.GetEnvVars()) == 0 {
				continue
			}
			name := f.Names()[0]
			row, ok := rows[name]
			if !ok {
				t.Errorf("%s: no row for --%s", tc.doc, name)
				continue
			}
			delete(rows, name)
			if env := strings.Join(df.GetEnvVars(), ","); env != row[0] {
				t.Errorf("%s: --%s reads %s, the table says %s", tc.doc, name, env, row[0])
			}
			def := strings.Trim(df.GetDefaultText(), `"`)
			switch {
			case row[1] == "none" && df.GetValue() == "":
			case row[1] == "off" && def == "false":
			case row[1] != def:
				t.Errorf("%s: --%s defaults to %q, the table says %q", tc.doc, name, def, row[1])
			}
		}
		for name := range rows {
			t.Errorf("%s: a row for --%s, which has no environment variable or does not exist", tc.doc, name)
		}
	}
}

// TestReadmeByHand runs the README's "serving core by hand" lines as a
// shell script — build, a scratch redis-server, datagen, bootstrap, script
// load, recommend, model, then the calling convention's redis-cli lines
// (the README says its examples run against this Redis too), shutdown — in
// a scratch directory, with the port changed to a free one, the data
// directory moved into the scratch directory and the binary built there: it
// must exit 0, print a top 5 whose scores fall, describe the model it
// bootstrapped, and the redis-cli lines must answer two top 5s.
func TestReadmeByHand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	readme := readReadme(t)
	sh := readmeBlock(t, readme, "The serving core by hand", "sh")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "redbandit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// The calling convention's redis-cli lines need lua/ no more than the
	// binary does; they run before the shutdown.
	cli := readmeBlock(t, readme, "\n### redis-cli\n", "sh")
	sh = replaceOnce(t, sh, "redis-cli -p 6399 shutdown nosave", "echo '== redis-cli'\n"+cli+"redis-cli -p 6399 shutdown nosave")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	sh = replaceOnce(t, sh, "make build\n", "") // built above
	if n := strings.Count(sh, "6399"); n != 3 {
		t.Fatalf("README example: port 6399 occurs %d times, want 3 (server, URL, shutdown)", n)
	}
	sh = strings.ReplaceAll(sh, "6399", port)
	if n := strings.Count(sh, "/tmp/redbandit-data"); n != 2 {
		t.Fatalf("README example: /tmp/redbandit-data occurs %d times, want 2 (datagen, bootstrap)", n)
	}
	sh = strings.ReplaceAll(sh, "/tmp/redbandit-data", filepath.Join(dir, "data"))
	sh = strings.ReplaceAll(sh, "--daemonize yes", "--daemonize yes --dir "+dir+" --bind 127.0.0.1")
	// A daemonized server may not listen yet when the next line runs.
	sh = replaceOnce(t, sh, "--save ''\n", "--save ''\nfor _ in $(seq 1 100); do redis-cli -p "+port+" ping >/dev/null 2>&1 && break; sleep 0.05; done\n")
	// The server goes down even if a line fails.
	sh = "trap 'redis-cli -p " + port + " shutdown nosave >/dev/null 2>&1 || true' EXIT\n" + sh
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", sh)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's lines: %v\n%s", err, out)
	}
	before, after, _ := strings.Cut(string(out), "== redis-cli\n")
	var scores []float64
	for _, line := range strings.Split(before, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			continue
		}
		if rank, err := strconv.Atoi(f[0]); err != nil || rank != len(scores)+1 {
			continue
		}
		s, err := strconv.ParseFloat(f[2], 64)
		if err != nil || (len(scores) > 0 && s > scores[len(scores)-1]) {
			t.Fatalf("recommend printed %q", line)
		}
		scores = append(scores, s)
	}
	if len(scores) != 5 || !strings.Contains(before, "folded 10000 events") || !strings.Contains(before, "into 202 products of model demo") ||
		!strings.Contains(before, "events    10000") {
		t.Fatalf("the README's lines printed:\n%s", out)
	}
	if fields := strings.Fields(after); len(fields) != 20 || fields[0] != "p029" || slices.Contains(fields[10:], "p029") || slices.Contains(fields[10:], "p054") {
		t.Fatalf("the README's redis-cli lines against the by-hand Redis printed %q", fields)
	}
}
