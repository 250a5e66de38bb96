package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/training/event"
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

// TestReadmeExamples runs the README's calling-convention examples as a
// newcomer pastes them — the redis-cli lines and the Python (redis-py)
// snippet, only pointed at the test's redis-server — against a model
// "default" of the README's dimension, and checks their answers against a
// brute-force top-k of linucb.Score over every product (scores within 1e-9
// relative). Products 17, 42 and 79 are trained to top the README's
// context, so that the examples' exclusions change the answer. The Python
// part runs with $REDBANDIT_PYTHON (default python3), which must import
// redis-py; it is skipped without, unless REDBANDIT_TEST_PYTHON=1 (make
// test sets both: scripts/deps.sh examples picks an interpreter with
// redis-py and records it in ~/.cache/redbandit/examples.env).
func TestReadmeExamples(t *testing.T) {
	readme := readReadme(t)
	srv := redistest.Start(t)
	host, port, err := net.SplitHostPort(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The README's context: age, latitude, longitude, then one-hot groups.
	x := []float64{0.3, 0.5, 0.7, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0}
	const d, products = 15, 100
	features := make([]string, d)
	for i := range features {
		features[i] = fmt.Sprintf("f%d", i)
	}
	groups := []model.Group{{Features: []int{3, 4}}, {Features: []int{5, 6, 7, 8, 9}},
		{Features: []int{10, 11, 12}, Optional: true}, {Features: []int{13, 14}}}
	w := store.Write{Model: "default", Features: features, Groups: groups, Lambda: 1}
	rng := rand.New(rand.NewPCG(5, 6))
	params := make([]linucb.Params, products)
	for a := range products {
		arm := linucb.NewArm(d, 1)
		for range 30 {
			y := make([]float64, d)
			y[0], y[1], y[2] = rng.Float64(), rng.Float64(), rng.Float64()
			for _, g := range groups {
				y[g.Features[rng.IntN(len(g.Features))]] = 1
			}
			r := float64(rng.IntN(5) / 4) // clicked one time in five
			if a == 17 || a == 42 || a == 79 {
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
		w.Arms = append(w.Arms, store.ArmWrite{ID: strconv.Itoa(a), Arm: arm, Params: p})
	}
	if _, err := w.Apply(ctx, srv.Client()); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "--redis", srv.URL(), "script", "load"); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	// want is the brute-force top 5 for the README's context and α = 0.1,
	// without the excluded products, as id, score, id, score, ...
	want := func(exclude ...int) []string {
		idx := make([]int, 0, products)
		for a := range products {
			if !slices.Contains(exclude, a) {
				idx = append(idx, a)
			}
		}
		slices.SortStableFunc(idx, func(i, j int) int {
			return -cmp.Compare(linucb.Score(x, params[i], 0.1), linucb.Score(x, params[j], 0.1))
		})
		var out []string
		for _, a := range idx[:5] {
			out = append(out, strconv.Itoa(a), strconv.FormatFloat(linucb.Score(x, params[a], 0.1), 'g', -1, 64))
		}
		return out
	}
	if top := want(); !slices.Contains(top, "17") || !slices.Contains(top, "42") || !slices.Contains(top, "79") {
		t.Fatalf("the trained products do not top the README's context: %v", top)
	}
	same := func(what string, got, want []string) {
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

	// redis-cli: FCALL_RO, then EVALSHA excluding 17 and 42.
	sh := readmeBlock(t, readme, "\n### redis-cli\n", "sh")
	sh = strings.ReplaceAll(sh, "redis-cli ", "redis-cli -h "+host+" -p "+port+" ")
	sh = replaceOnce(t, sh, "$(bin/redbandit script sha)", lua.RecommendSHA())
	out, err := exec.Command("bash", "-euo", "pipefail", "-c", sh).CombinedOutput()
	if err != nil {
		t.Fatalf("the README's redis-cli lines: %v\n%s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 20 {
		t.Fatalf("the README's redis-cli lines printed %q, want two replies of 10 values", out)
	}
	same("redis-cli FCALL_RO", lines[:10], want())
	same("redis-cli EVALSHA … EXCLUDE 2 17 42", lines[10:], want(17, 42))

	// Python: the script with EXCLUDE 1 79 (its FCALL_RO reply is replaced).
	python := examplePython()
	if out, err := exec.Command(python, "-c", "import redis").CombinedOutput(); err != nil {
		hint := "bash scripts/deps.sh examples, then . ~/.cache/redbandit/examples.env (it sets REDBANDIT_PYTHON to an interpreter with redis-py)"
		if os.Getenv("REDBANDIT_TEST_PYTHON") == "1" {
			t.Fatalf("REDBANDIT_TEST_PYTHON=1 but %s cannot import redis: %v\n%s\nfix: %s", python, err, out, hint)
		}
		t.Skipf("%s cannot import redis (REDBANDIT_TEST_PYTHON=1 makes this a failure); to run it: %s", python, hint)
	}
	py := readmeBlock(t, readme, "\n### Python (redis-py)\n", "python")
	py = replaceOnce(t, py, "redis.Redis(decode_responses=True)", "redis.Redis(host="+strconv.Quote(host)+", port="+port+", decode_responses=True)")
	py += "\nimport json\nprint(json.dumps([v for item in top for v in (item[0], repr(item[1]))]))\n"
	cmd := exec.Command(python, "-")
	cmd.Dir = "../.." // the snippet reads lua/recommend.lua
	cmd.Stdin = strings.NewReader(py)
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's Python snippet: %v\n%s", err, out)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("the README's Python snippet printed %q: %v", out, err)
	}
	same("Python script(… EXCLUDE 1 79)", got, want(79))
}

// examplePython returns the Python interpreter the README's Python example
// runs with: $REDBANDIT_PYTHON, else python3 from PATH.
func examplePython() string {
	return cmp.Or(os.Getenv("REDBANDIT_PYTHON"), "python3")
}

// TestReadmeSidecarExamples runs the README's curl examples for the HTTP
// sidecar as written, pointed at a sidecar of this test, over a model
// "default" bootstrapped with the reference spec: the three forms of a
// recommendation must answer what store.Recommend answers for the context
// each encodes (scores within 1e-9 relative; the README's exclusion of
// product 17, which tops the unexcluded answer, honoured), the dashboard's
// data endpoints must describe model "demo" (the same history) and its 20
// busiest products, and the feedback example must put its event into the
// feedback topic, keyed by product.
func TestReadmeSidecarExamples(t *testing.T) {
	readme := readReadme(t)
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	c := srv.Client()
	ctx := context.Background()

	// A history in the reference spec's columns: products 0..99, clicked
	// one time in five; 17 and 42 clicked in the README's dense context.
	sp := spec.Reference()
	dense := []float64{0.33, 0.5, 0.5, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0}
	groups := [][]int{{3, 4}, {5, 6, 7, 8, 9}, {10, 11, 12}, {13, 14}}
	var csv strings.Builder
	csv.WriteString("event_id," + strings.Join(sp.Names(), ",") + ",product_id,response\n")
	rng := rand.New(rand.NewPCG(8, 9))
	row := func(n int, x []float64, id, r int) {
		fmt.Fprintf(&csv, "e%d", n)
		for _, v := range x {
			fmt.Fprintf(&csv, ",%v", v)
		}
		fmt.Fprintf(&csv, ",%d,%d\n", id, r)
	}
	for n := range 3000 {
		x := make([]float64, len(dense))
		x[0], x[1], x[2] = rng.Float64(), rng.Float64(), rng.Float64()
		for _, g := range groups {
			x[g[rng.IntN(len(g))]] = 1
		}
		row(n, x, n%100, rng.IntN(5)/4)
	}
	for n := range 60 {
		row(3000+n, dense, []int{17, 42}[n%2], 1)
	}
	path := filepath.Join(t.TempDir(), "history.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"default", "demo"} { // the dashboard's examples name "demo"
		if out, err := run(t, "--redis", srv.URL(), "--model", model, "bootstrap", "--spec", "reference", path); err != nil {
			t.Fatalf("bootstrap: %v\n%s", err, out)
		}
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, sidecar.DefaultTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	s := sidecar.New(sidecar.Config{Redis: c, Producer: prod})
	if err := s.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	curl := func(block string, calls int) []byte {
		t.Helper()
		if n := strings.Count(block, "localhost:8080/"); n != calls || strings.Count(block, "curl -s ") != calls {
			t.Fatalf("README example: %d curl calls to localhost:8080, want %d:\n%s", n, calls, block)
		}
		block = strings.ReplaceAll(block, "localhost:8080", strings.TrimPrefix(hs.URL, "http://"))
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", block)
		cmd.Env = append(os.Environ(), "no_proxy=127.0.0.1,localhost", "NO_PROXY=127.0.0.1,localhost") // loopback, even behind a proxy
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the README's curl lines: %v\n%s", err, out)
		}
		return out
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
	if top, err := store.Recommend(ctx, c, "default", store.Query{K: 5, Alpha: 0.1, Context: attrs}); err != nil || !slices.ContainsFunc(top, func(it store.Item) bool { return it.ID == "17" }) {
		t.Fatalf("product 17 is not in the unexcluded top 5 of the README's attributes: %v %v", top, err)
	}
	for i, q := range []store.Query{{Context: dense}, {Context: named}, {Context: attrs, Exclude: []string{"17"}}} {
		q.K, q.Alpha = 5, 0.1
		want, err := store.Recommend(ctx, c, "default", q)
		if err != nil {
			t.Fatal(err)
		}
		got := answers[i]
		if got.Error != "" || got.Model != "default" || len(got.EventID) != 32 || len(got.Items) != len(want) {
			t.Fatalf("README request %d: %+v, want the items %v", i+1, got, want)
		}
		for j, w := range want {
			if g := got.Items[j]; g.ID != w.ID || math.Abs(g.Score-w.Score) > 1e-9*math.Abs(w.Score) {
				t.Fatalf("README request %d, item %d: %v, want %v", i+1, j, g, w)
			}
		}
	}

	// The dashboard's data endpoints: the panels of model demo, and its 20
	// busiest products for a visitor, busiest first.
	dec = json.NewDecoder(bytes.NewReader(curl(readmeBlock(t, readme, "The data endpoints are plain JSON:", "sh"), 2)))
	var board sidecar.DashboardResponse
	var busiest sidecar.ArmsResponse
	if err := dec.Decode(&board); err != nil || board.Model != "demo" || board.Products != 100 {
		t.Fatalf("the README's dashboard example: %+v, %v", board, err)
	}
	if err := dec.Decode(&busiest); err != nil || busiest.Model != "demo" || busiest.Products != 100 || len(busiest.Arms) != 20 ||
		!slices.IsSortedFunc(busiest.Arms, func(a, b sidecar.ArmDetail) int { return int(b.Events - a.Events) }) || busiest.Arms[0].Events < 60 {
		t.Fatalf("the README's arms example: %+v, %v", busiest, err)
	}

	// Feedback: 202 {"accepted":1}, and the event in the topic.
	out := curl(readmeBlock(t, readme, "Feedback (with `--brokers`)", "sh"), 1)
	if strings.TrimSpace(string(out)) != `{"accepted":1}` {
		t.Fatalf("the README's feedback example answered %q", out)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(sidecar.DefaultTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) == 0 && pctx.Err() == nil {
		recs = append(recs, cons.PollFetches(pctx).Records()...)
	}
	codec, err := event.NewCodec(len(dense))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("%d records in %s, want the README's one", len(recs), sidecar.DefaultTopic)
	}
	ev, err := codec.Decode(recs[0].Value)
	if err != nil || string(recs[0].Key) != "42" || ev.ProductID != "42" || ev.Reward != 1 || ev.EventID != "9caad668…" ||
		fmt.Sprint(ev.ContextVector) != fmt.Sprint(attrs) {
		t.Fatalf("the README's feedback reached Kafka as %q: %+v, %v", recs[0].Key, ev, err)
	}
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
// load, recommend, model, shutdown — in a scratch directory, with the port
// changed to a free one and the binary built there: it must exit 0, print
// a top 5 whose scores fall, and describe the model it bootstrapped.
func TestReadmeByHand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	sh := readmeBlock(t, readReadme(t), "The serving core by hand", "sh")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "redbandit")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
	var scores []float64
	for _, line := range strings.Split(string(out), "\n") {
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
	if len(scores) != 5 || !strings.Contains(string(out), "folded 10000 events") || !strings.Contains(string(out), "events    10000") {
		t.Fatalf("the README's lines printed:\n%s", out)
	}
}
