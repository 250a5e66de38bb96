package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/linucb"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/store"
)

// readmeBlock returns the first fenced code block of language lang after
// the heading in README.md.
func readmeBlock(t *testing.T, readme, heading, lang string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```"+lang+"\n")
	if !ok {
		t.Fatalf("README.md has no %s block after %q", lang, heading)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the %s block after %q is not closed", lang, heading)
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
// part needs python3 with redis-py; it is skipped without, unless
// REDBANDIT_TEST_PYTHON=1 (make test sets it after scripts/deps.sh python
// installs Debian's python3-redis).
func TestReadmeExamples(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
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
	groups := []store.Group{{Features: []int{3, 4}}, {Features: []int{5, 6, 7, 8, 9}},
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
			return -cmpFloat(linucb.Score(x, params[i], 0.1), linucb.Score(x, params[j], 0.1))
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
	sh := readmeBlock(t, readme, "### redis-cli", "sh")
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
	if err := exec.Command("python3", "-c", "import redis").Run(); err != nil {
		if os.Getenv("REDBANDIT_TEST_PYTHON") == "1" {
			t.Fatalf("REDBANDIT_TEST_PYTHON=1 but python3 cannot import redis (scripts/deps.sh python installs it): %v", err)
		}
		t.Skip("python3 with redis-py not found; REDBANDIT_TEST_PYTHON=1 makes this a failure")
	}
	py := readmeBlock(t, readme, "### Python (redis-py)", "python")
	py = replaceOnce(t, py, "redis.Redis(decode_responses=True)", "redis.Redis(host="+strconv.Quote(host)+", port="+port+", decode_responses=True)")
	py += "\nimport json\nprint(json.dumps([v for item in top for v in (item[0], repr(item[1]))]))\n"
	cmd := exec.Command("python3", "-")
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

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
