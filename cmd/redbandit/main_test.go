package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/model/store"
	"github.com/urfave/cli/v2"
)

// run runs the CLI in-process, as a user would from the shell.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	err := app.RunContext(context.Background(), append([]string{"redbandit"}, args...))
	return out.String(), err
}

// TestCommandLine walks the serving core through the binary's commands:
// bootstrap a log, load the scripts, recommend by EVALSHA and FCALL_RO, and
// compares the answer with a hand computation.
func TestCommandLine(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	dir := t.TempDir()
	csv := filepath.Join(dir, "log.csv")
	// Product a: one click in context (1,0); product b: one miss in (0,1).
	if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,a,1\n2,0,1,b,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis", srv.URL(), "--model", "cli"}
	out, err := run(t, append(g, "bootstrap", csv)...)
	if err != nil || !strings.Contains(out, "folded 2 events") {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	out, err = run(t, append(g, "bootstrap", csv)...)
	if err != nil || !strings.Contains(out, "already applied") {
		t.Fatalf("second bootstrap: %v\n%s", err, out)
	}
	if out, err = run(t, append(g, "script", "load")...); err != nil {
		t.Fatalf("script load: %v\n%s", err, out)
	}
	// For a: A = I + e1e1ᵀ = diag(2,1), b = e1, θ = (0.5, 0); for b: A = diag(1,2), b = 0.
	// Context (1,0): a scores 0.5 + 0.1·√0.5, b scores 0.1·√1.
	pa, _ := mustArm(t, [][]float64{{1, 0}}, []float64{1})
	want := "1\ta\t" + store.FormatFloat(linucb.Score([]float64{1, 0}, pa, 0.1)) + "\n2\tb\t0.1\n"
	for _, extra := range [][]string{nil, {"--fcall"}} {
		args := append(append(g, "recommend", "--context", "1,0"), extra...)
		out, err = run(t, args...)
		if err != nil || out != want {
			t.Fatalf("recommend %v: %v\ngot  %q\nwant %q", extra, err, out, want)
		}
	}
	if _, err = run(t, append(g, "recommend", "--context", "1,0,3")...); err == nil || !strings.Contains(err.Error(), "too many context values: the model has dimension 2") {
		t.Fatalf("recommend with a wrong dimension: %v", err)
	}
	if out, err = run(t, "script", "sha"); err != nil || strings.TrimSpace(out) != lua.RecommendSHA() {
		t.Fatalf("script sha: %v %q", err, out)
	}
	if out, err = run(t, append(g, "model")...); err != nil || !strings.Contains(out, "products  2") || !strings.Contains(out, "events    2") {
		t.Fatalf("model: %v\n%s", err, out)
	}
}

func mustArm(t *testing.T, xs [][]float64, rs []float64) (linucb.Params, *linucb.Arm) {
	t.Helper()
	arm := linucb.NewArm(len(xs[0]), 1)
	for i, x := range xs {
		if err := arm.Update(x, rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	p, err := arm.Solve()
	if err != nil {
		t.Fatal(err)
	}
	return p, arm
}

// TestBootstrapOneHot records one-hot groups given by name, and rejects a
// group naming a feature the file does not have.
func TestBootstrapOneHot(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	csv := filepath.Join(t.TempDir(), "log.csv")
	if err := os.WriteFile(csv, []byte("event_id,age,g_f,g_m,product_id,response\n1,0.5,1,0,a,1\n2,0.2,0,1,b,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis", srv.URL(), "--model", "oh"}
	if out, err := run(t, append(g, "bootstrap", "--onehot", "g_f,g_x", csv)...); err == nil || !strings.Contains(err.Error(), `"g_x"`) {
		t.Fatalf("unknown feature in a group: %v\n%s", err, out)
	}
	if out, err := run(t, append(g, "bootstrap", "--onehot", "g_f,g_m", csv)...); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	out, err := run(t, append(g, "model")...)
	if err != nil || !strings.Contains(out, "one-hot   g_f,g_m\n") {
		t.Fatalf("model: %v\n%s", err, out)
	}
	out, err = run(t, append(g, "recommend", "-k", "1", "--context", "0.5,1,0")...)
	if err != nil || !strings.HasPrefix(out, "1\ta\t") {
		t.Fatalf("recommend: %v\n%s", err, out)
	}
}

func TestACLCommand(t *testing.T) {
	if _, err := run(t, "acl", "--out", "-", "--serve-password", "a", "--trainer-password", "b"); err == nil {
		t.Fatal("acl without the admin password succeeded")
	}
	out, err := run(t, "acl", "--out", "-", "--serve-password", "a", "--trainer-password", "b", "--admin-password", "c")
	if err != nil || !strings.Contains(out, "user default off") || !strings.Contains(out, "user rb-serve on #") {
		t.Fatalf("acl: %v\n%s", err, out)
	}
}

// TestBootstrapSpec stores the reference spec with a model and derives its
// one-hot groups; a file whose columns are not the spec's is refused; a
// further log bootstrapped without --spec keeps the model's spec.
func TestBootstrapSpec(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	dir := t.TempDir()
	names := spec.Reference().Names()
	good := filepath.Join(dir, "good.csv")
	row := "1,0.3,0.5,0.5,1,0,0,0,0,0,1,1,0,0,1,0,p1,1\n"
	if err := os.WriteFile(good, []byte("event_id,"+strings.Join(names, ",")+",product_id,response\n"+row), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(bad, []byte("event_id,a,product_id,response\n1,0.5,p1,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis", srv.URL(), "--model", "sp"}
	if _, err := run(t, append(g, "bootstrap", "--spec", "reference", bad)...); err == nil || !strings.Contains(err.Error(), "not the spec's") {
		t.Fatalf("bootstrap of a file that is not the spec's: %v", err)
	}
	if out, err := run(t, append(g, "bootstrap", "--spec", "reference", good)...); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	// A further log of the model needs no --spec: the model keeps its own.
	more := filepath.Join(dir, "more.csv")
	if err := os.WriteFile(more, []byte("event_id,"+strings.Join(names, ",")+",product_id,response\n2"+row[1:]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, append(g, "bootstrap", more)...); err != nil || !strings.Contains(out, "folded 1 events") {
		t.Fatalf("bootstrap of a further log without --spec: %v\n%s", err, out)
	}
	out, err := run(t, append(g, "model", "--spec")...)
	if err != nil || !strings.Contains(out, "morning,afternoon,evening,(or none)") || !strings.Contains(out, `"kind":"weekend"`) || !strings.Contains(out, "events    2") {
		t.Fatalf("model: %v\n%s", err, out)
	}
}

func TestDatagenCommand(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "datagen", "--out", dir, "--seed", "3")
	if err != nil || !strings.Contains(out, "10000 events") {
		t.Fatalf("datagen: %v\n%s", err, out)
	}
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	out, err = run(t, "--redis", srv.URL(), "bootstrap", "--spec", "reference", filepath.Join(dir, "training_log.csv"))
	if err != nil || !strings.Contains(out, "folded 10000 events") {
		t.Fatalf("bootstrap of the generated log: %v\n%s", err, out)
	}
}

func TestSidecarProcs(t *testing.T) {
	for _, tc := range []struct {
		flag    int
		envSet  bool
		current int
		want    int
	}{
		{0, false, 2, 1},  // a 2-core box: one core left to Redis
		{0, false, 8, 7},  // one of eight
		{0, false, 1, 1},  // never fewer than one
		{0, true, 2, 2},   // $GOMAXPROCS as the runtime applied it
		{3, true, 2, 3},   // the flag wins
		{4, false, 16, 4}, // fewer than the default
	} {
		got, err := sidecarProcs(tc.flag, tc.envSet, tc.current)
		if err != nil || got != tc.want {
			t.Errorf("sidecarProcs(%d, %v, %d) = %d, %v; want %d", tc.flag, tc.envSet, tc.current, got, err, tc.want)
		}
	}
	if _, err := sidecarProcs(-1, false, 2); err == nil {
		t.Error("sidecarProcs(-1) gave no error")
	}
}

// TestSidecarAlpha runs the sidecar command and asks it for a
// recommendation that names no alpha: --alpha 0 must serve the estimates
// alone (xᵀθ), not the default's bonus; without the flag the default 0.1
// applies; a negative --alpha is refused at start.
func TestSidecarAlpha(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	csv := filepath.Join(t.TempDir(), "log.csv")
	// As in TestCommandLine: for context (1,0), a's mean is 0.5 and its
	// bonus α·√0.5, b's mean 0 and its bonus α.
	if err := os.WriteFile(csv, []byte("event_id,f1,f2,product_id,response\n1,1,0,a,1\n2,0,1,b,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis", srv.URL(), "--model", "al"}
	if out, err := run(t, append(g, "bootstrap", csv)...); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, out)
	}
	pa, _ := mustArm(t, [][]float64{{1, 0}}, []float64{1})
	pb, _ := mustArm(t, [][]float64{{0, 1}}, []float64{0})
	for _, tc := range []struct {
		flags []string
		alpha float64
	}{{[]string{"--alpha", "0"}, 0}, {nil, linucb.DefaultAlpha}, {[]string{"--alpha", "0.5"}, 0.5}} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- newApp().RunContext(ctx, append(append([]string{"redbandit"}, g...), append([]string{"sidecar", "--listen", addr}, tc.flags...)...))
		}()
		var body []byte
		for range 200 {
			resp, err := http.Post("http://"+addr+"/v1/recommend", "application/json", strings.NewReader(`{"context": [1, 0]}`))
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("sidecar %v: %v", tc.flags, err)
		}
		var got struct{ Items []store.Item }
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("sidecar %v answered %q: %v", tc.flags, body, err)
		}
		want := []store.Item{{ID: "a", Score: linucb.Score([]float64{1, 0}, pa, tc.alpha)}, {ID: "b", Score: linucb.Score([]float64{1, 0}, pb, tc.alpha)}}
		if len(got.Items) != 2 || got.Items[0].ID != want[0].ID || got.Items[1].ID != want[1].ID ||
			math.Abs(got.Items[0].Score-want[0].Score) > 1e-12 || math.Abs(got.Items[1].Score-want[1].Score) > 1e-12 {
			t.Fatalf("sidecar %v answered %s, want %v (alpha %v)", tc.flags, body, want, tc.alpha)
		}
	}
	if _, err := run(t, append(g, "sidecar", "--alpha", "-1")...); err == nil || !strings.Contains(err.Error(), "--alpha") {
		t.Fatalf("sidecar --alpha -1: %v", err)
	}
}

// TestHelpTexts renders the help of the binary and of every command and
// checks each flag's line: its placeholder is the flag's (urfave/cli takes
// backquoted text in a usage as the placeholder: "--csv redbandit
// bootstrap"), and it states a default at most once: urfave/cli appends
// "(default: …)", so a usage must not say one (DefaultText does).
func TestHelpTexts(t *testing.T) {
	defaultWord := regexp.MustCompile(`(?i)\bdefaults?\b`)
	check := func(path []string, flags []cli.Flag) {
		t.Helper()
		out, err := run(t, append(path, "--help")...)
		if err != nil {
			t.Fatalf("%v --help: %v", path, err)
		}
		for _, f := range flags {
			df := f.(cli.DocGenerationFlag)
			name := f.Names()[0]
			if defaultWord.MatchString(df.GetUsage()) {
				t.Errorf("%v --%s: the usage states a default (give it as DefaultText): %q", path, name, df.GetUsage())
			}
			if strings.Contains(df.GetUsage(), "`") {
				t.Errorf("%v --%s: a backquote in the usage becomes the placeholder: %q", path, name, df.GetUsage())
			}
			var line string
			for _, l := range strings.Split(out, "\n") {
				if fields := strings.Fields(strings.ReplaceAll(l, ",", "")); len(fields) > 0 && slices.Contains(fields[:min(len(fields), 4)], "--"+name) ||
					len(name) == 1 && len(fields) > 0 && fields[0] == "-"+name {
					line = l
					break
				}
			}
			if line == "" {
				t.Errorf("%v --help has no line for --%s:\n%s", path, name, out)
				continue
			}
			if n := len(defaultWord.FindAllString(strings.ReplaceAll(line, `"default"`, ""), -1)); n > 1 {
				t.Errorf("%v --%s states its default %d times: %q", path, name, n, strings.TrimSpace(line))
			}
		}
	}
	app := newApp()
	check(nil, app.Flags)
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := append(slices.Clone(path), c.Name)
			check(p, c.Flags)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, app.Commands)
}
