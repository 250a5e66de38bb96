package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
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
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
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
