package demo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/redbandit/redbandit/tools/demo"
)

// chromium returns the path of a Chromium binary. Without one the test is
// skipped, unless REDBANDIT_TEST_BROWSER=1 (make test sets it after
// installing Debian's chromium), which makes its absence a failure.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("REDBANDIT_TEST_BROWSER") == "1" {
		t.Fatal("REDBANDIT_TEST_BROWSER=1 but no chromium on PATH (scripts/deps.sh browser installs it)")
	}
	t.Skip("no chromium on PATH")
	return ""
}

// pageState is what the test reads off the page (the test hooks of
// sidecar/ui/app.js).
type pageState struct {
	State     string   `json:"state"`
	Points    int      `json:"points"`
	Series    []string `json:"series"`
	Top5      []string `json:"top5"`
	Products  int      `json:"products"`
	Observed  string   `json:"observed"`
	Events    string   `json:"events"`
	RPS       string   `json:"rps"`
	P50       string   `json:"p50"`
	LinUCBCTR string   `json:"linucb"`
	Scoring   string   `json:"scoring"`
}

const readPage = `(() => {
	const q = s => document.querySelector(s);
	const text = s => (q(s) ? q(s).textContent.trim() : "");
	const chart = q("#ctr-chart");
	return {
		state: document.body.dataset.state || "",
		points: chart ? Number(chart.getAttribute("data-points") || 0) : 0,
		series: [...document.querySelectorAll("#ctr-chart path.series")].map(p => p.getAttribute("class")),
		top5: [...document.querySelectorAll("#top5 tbody tr[data-id]")].map(r => r.dataset.id),
		products: document.querySelectorAll("#products tbody tr[data-id]").length,
		observed: text("#ctr-observed"),
		events: text("#trainer-events"),
		rps: text("#serving-rps"),
		p50: text("#serving-p50"),
		linucb: text("#ctr-linucb"),
		scoring: text("#serving-scoring"),
	};
})()`

// TestDashboardBrowser loads the dashboard of a running demo in headless
// Chromium, waits until the charts show data, saves a screenshot as a test
// artifact ($REDBANDIT_ARTIFACTS, default ../artifacts) and requires a
// non-empty CTR chart with the simulator's policies, a live top-5, the
// products table, serving and trainer figures, the scoring path, and no
// console errors or uncaught exceptions.
func TestDashboardBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo and a browser")
	}
	bin := chromium(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out strings.Builder
	var outMu sync.Mutex
	go func() {
		_, err := demo.Run(ctx, demo.Config{Visits: 1_000_000, Rate: 300, Dir: t.TempDir(), Quiet: true, Listen: "127.0.0.1:0",
			RedisConf: "../../redis.conf", Out: lockedWriter{&outMu, &out}, Hold: true,
			OnReady: func(url string) { ready <- url }})
		done <- err
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("demo: %v\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not start in 60 s")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("demo: %v", err)
		}
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1440, 1000), chromedp.Flag("disable-background-networking", true))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	var mu sync.Mutex
	var problems []string
	note := func(ev any) { // on chromedp's reader goroutine: record only
		var p string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			switch ev.Type {
			case runtime.ConsoleAPICalledTypeError, runtime.ConsoleAPICalledTypeWarning, runtime.ConsoleAPICalledTypeAssert:
				var args []string
				for _, a := range ev.Args {
					args = append(args, strings.TrimSpace(string(a.Value)+" "+a.Description))
				}
				p = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			p = "uncaught exception: " + ev.ExceptionDetails.Text
			if ex := ev.ExceptionDetails.Exception; ex != nil {
				p += " " + ex.Description
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning {
				p = fmt.Sprintf("log %s: %s %s", ev.Entry.Level, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if p != "" {
			mu.Lock()
			problems = append(problems, p)
			mu.Unlock()
		}
	}
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithListener(note))
	defer bcancel()
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	if _, err := chromedp.Call(bctx, log.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}

	tctx, tcancel := context.WithTimeout(bctx, 90*time.Second)
	defer tcancel()
	// Wait for at least 10 s of samples, a full top-5 and the serving figures.
	const ready5 = `(() => { const s = ` + readPage + `; return s.state === "live" && s.points >= 10 && s.top5.length === 5 && s.products > 0 && /\d/.test(s.observed) && /\d/.test(s.p50); })()`
	err := chromedp.Do(tctx, chromedp.Navigate(url+"/"))
	if err == nil {
		_, err = chromedp.Run(tctx, chromedp.Poll[bool](ready5, chromedp.WithPollingInterval(250*time.Millisecond)))
	}
	if err != nil {
		now, _ := chromedp.Run(bctx, chromedp.Evaluate[pageState](readPage))
		b, _ := json.Marshal(now)
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the page never showed data: %v\npage: %s\nproblems: %v", err, b, problems)
	}
	st, err := chromedp.Run(tctx, chromedp.Evaluate[pageState](readPage))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}

	dir := os.Getenv("REDBANDIT_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s (%d bytes)", abs, len(shot))

	b, _ := json.Marshal(st)
	t.Logf("page: %s", b)
	for _, want := range []string{"series-observed", "series-linucb", "series-random", "series-oracle"} {
		if !strings.Contains(strings.Join(st.Series, " "), want) {
			t.Errorf("CTR chart has no %s path: %v", want, st.Series)
		}
	}
	if !strings.Contains(st.Observed, "%") || !strings.ContainsAny(st.LinUCBCTR, "0123456789") {
		t.Errorf("CTR figures: observed %q, linucb %q", st.Observed, st.LinUCBCTR)
	}
	if st.Products < 20 || len(st.Top5) != 5 || !strings.ContainsAny(st.Events, "123456789") || !strings.ContainsAny(st.RPS, "123456789") {
		t.Errorf("tables and figures: %s", b)
	}
	if st.Scoring != "Redis (script)" { // the demo's sidecar runs --scoring redis
		t.Errorf("scoring line %q, want %q", st.Scoring, "Redis (script)")
	}
	if len(shot) < 10_000 || string(shot[1:4]) != "PNG" {
		t.Errorf("the screenshot is not a PNG of a page (%d bytes)", len(shot))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(problems, "\n"))
	}
}

// lockedWriter serialises writes to a strings.Builder.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
