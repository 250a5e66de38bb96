package demo_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redbandit/redbandit/tools/demo"
	"github.com/redbandit/redbandit/tools/simulate"
)

// TestShortDemo runs the whole loop — Redis with ACL users, Kafka, trainer,
// sidecar, simulator — for 3,000 visits at full speed with a 200 ms flush
// interval, warm-started. LinUCB's click rate over the last 1,000 visits must
// beat the random policy's on the same visits by more than four standard
// errors, every event must be trained (several per visit with the default
// feedback), and everything started must be
// stopped when Run returns.
func TestShortDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	dir := t.TempDir()
	var out bytes.Buffer
	cfg := demo.Config{Visits: 3000, FlushInterval: 200 * time.Millisecond, Dir: dir, Out: &out, Quiet: true, Via: "http", Listen: "127.0.0.1:0",
		RedisConf: "../../redis.conf"}
	// With REDBANDIT_TEST_KAFKA=host:port (scripts/kafka.sh up), the loop
	// runs through a real Apache Kafka broker instead of the in-process one.
	if addr := os.Getenv("REDBANDIT_TEST_KAFKA"); addr != "" {
		cfg.Brokers = []string{addr}
		t.Logf("real Kafka at %s", addr)
	}
	sum, err := demo.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	last := sum.Curve[len(sum.Curve)-1].CTR
	lin, rnd := last[simulate.LinUCB], last[simulate.Random]
	se := math.Sqrt(lin*(1-lin)/1000 + rnd*(1-rnd)/1000)
	t.Logf("last 1,000 visits: linucb %.3f random %.3f oracle %.3f; trained %d in %d flushes", lin, rnd, last[simulate.Oracle], sum.EventsTrained, sum.Flushes)
	if lin-rnd < 4*se {
		t.Errorf("LinUCB %.3f does not beat random %.3f by 4 standard errors (%.3f)", lin, rnd, 4*se)
	}
	// The default feedback, impressions above the click: one event for the
	// click and each product above it, five when nothing is clicked — more
	// than one per visit, and every one trained.
	if sum.Feedback != simulate.FeedbackImpressions || sum.Impressions != simulate.ImpressionsAbove ||
		sum.Sent <= 3000 || sum.Sent >= 5*3000 || sum.EventsTrained != int64(sum.Sent) || sum.Flushes < 2 {
		t.Errorf("feedback %s %s: sent %d, trained %d in %d flushes", sum.Feedback, sum.Impressions, sum.Sent, sum.EventsTrained, sum.Flushes)
	}
	if !strings.Contains(out.String(), "rolling CTR") {
		t.Errorf("no progress lines:\n%s", out.String())
	}
	// Everything is stopped: no redis-server with our directory, no sidecar.
	if pids, _ := exec.Command("pgrep", "-f", "redis-server.*"+dir).Output(); len(pids) > 0 {
		t.Errorf("redis-server still running: %s", pids)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(sum.SidecarURL, "http://"), time.Second); err == nil {
		c.Close()
		t.Errorf("the sidecar still listens on %s", sum.SidecarURL)
	}
	// The learning curve is a well-formed SVG with the three policies.
	var svg bytes.Buffer
	if err := demo.WriteSVG(&svg, "t", sum.Curve); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(svg.Bytes(), new(struct{})); err != nil || strings.Count(svg.String(), "<polyline") != 3 {
		t.Errorf("svg: %v\n%s", err, svg.String())
	}
}

// TestDemoImpressionsAll: through EVALSHA (--via redis), cold, with one
// feedback event per shown product, the simulator sends five events a visit
// and the trainer folds every one of them.
func TestDemoImpressionsAll(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demo.Config{Visits: 1000, Cold: true, Via: "redis", Feedback: simulate.FeedbackImpressions,
		Impressions: simulate.ImpressionsAll, Rate: -1, Dir: t.TempDir(), Out: &out, Quiet: true, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if sum.Visits != 1000 || sum.Sent != 5*1000 || sum.EventsTrained != 5*1000 || sum.Impressions != simulate.ImpressionsAll {
		t.Errorf("%d visits (impressions %s): sent %d, trained %d; want 1000, 5000, 5000", sum.Visits, sum.Impressions, sum.Sent, sum.EventsTrained)
	}
}

// TestDemoFeedbackSetting: an unknown feedback setting stops the demo
// before it starts anything (no working directory is created).
func TestDemoFeedbackSetting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "never")
	for _, cfg := range []demo.Config{{Feedback: "all"}, {Impressions: "below"}} {
		cfg.Dir = dir
		if _, err := demo.Run(context.Background(), cfg); !errors.Is(err, simulate.ErrSetting) {
			t.Errorf("%+v: %v, want ErrSetting", cfg, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%+v: the demo created %s", cfg, dir)
		}
	}
}
