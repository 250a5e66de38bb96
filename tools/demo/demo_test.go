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
	"sync"
	"testing"
	"time"

	"github.com/redbandit/redbandit/model/spec"
	"github.com/redbandit/redbandit/tools/demo"
	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/training/event"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestShortDemo runs the whole loop — Redis with ACL users, Kafka, trainer,
// sidecar, simulator — for 3,000 visits at full speed with a 200 ms flush
// interval, warm-started. LinUCB's click rate over the last 1,000 visits must
// beat the random policy's on the same visits by more than four standard
// errors, every event must be trained (several per visit with the default
// feedback, rewards by event id joined to the decision log), the summary
// must count what travelled, and everything started must be stopped when
// Run returns.
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
	// The default feedback, rewards by event id with impressions above the
	// click: the joiner emits one event for the click and each product
	// above it, five when nothing is clicked — more than one per visit, and
	// every one trained. One decision per visit, one reward per click.
	if sum.Feedback != simulate.FeedbackReward || sum.Impressions != simulate.ImpressionsAbove ||
		sum.Sent <= 3000 || sum.Sent >= 5*3000 || sum.EventsTrained != int64(sum.Sent) || sum.Flushes < 2 {
		t.Errorf("feedback %s %s: sent %d, trained %d in %d flushes", sum.Feedback, sum.Impressions, sum.Sent, sum.EventsTrained, sum.Flushes)
	}
	if sum.Decisions != 3000 || sum.Rewards != int64(sum.Clicks[simulate.LinUCB]) || sum.EventsEmitted != sum.EventsTrained || sum.DeadLetters != 0 {
		t.Errorf("travelled: %d decisions (want 3000), %d rewards (want %d clicks), %d events emitted (want %d trained), %d dead letters",
			sum.Decisions, sum.Rewards, sum.Clicks[simulate.LinUCB], sum.EventsEmitted, sum.EventsTrained, sum.DeadLetters)
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
	for _, cfg := range []demo.Config{{Feedback: "all"}, {Impressions: "below"}, {Feedback: simulate.FeedbackReward, Via: "redis"}} {
		cfg.Dir = dir
		if _, err := demo.Run(context.Background(), cfg); !errors.Is(err, simulate.ErrSetting) {
			t.Errorf("%+v: %v, want ErrSetting", cfg, err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%+v: the demo created %s", cfg, dir)
		}
	}
}

// TestDemoRewardByEventID runs the default route on a Kafka of the test's
// own and reads what the joiner committed to the feedback topic: for every
// visit, by the simulator's own view of its slate and click, exactly one
// event per counted product — the click with reward 1, the products above
// it with 0, all five with 0 when nothing is clicked (impressions above) —
// each with the visit's context, and nothing else; the trainer folded
// exactly that many.
func TestDemoRewardByEventID(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo runs for several seconds")
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	type want struct {
		reward float64
		x      []float64
	}
	expected := map[string]want{} // joiner event id → reward, context
	var visits, clicks int
	var mu sync.Mutex
	var out bytes.Buffer
	cfg := demo.Config{Visits: 1500, Cold: true, Rate: 1000, Dir: t.TempDir(), Out: &out, Quiet: true, Listen: "127.0.0.1:0",
		Brokers: kc.ListenAddrs(), OnFeedback: func(fb simulate.Feedback) {
			mu.Lock()
			defer mu.Unlock()
			visits++
			n := 5
			if fb.Clicked >= 0 {
				clicks++
				n = fb.Clicked + 1
			}
			for i, id := range fb.Slate[:n] {
				r := 0.0
				if i == fb.Clicked {
					r = 1
				}
				key := fb.EventID + "/" + id
				if _, dup := expected[key]; dup || fb.EventID == "" {
					t.Errorf("visit %d: event id %q twice or empty", fb.Visit.N, key)
				}
				expected[key] = want{r, fb.Visit.X}
			}
		}}
	sum, err := demo.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if visits != 1500 || sum.Sent != len(expected) || sum.EventsTrained != int64(len(expected)) || sum.Rewards != int64(clicks) || sum.Decisions != 1500 {
		t.Fatalf("%d visits, %d clicks, %d expected events; summary: sent %d, trained %d, decisions %d, rewards %d",
			visits, clicks, len(expected), sum.Sent, sum.EventsTrained, sum.Decisions, sum.Rewards)
	}

	// The run's feedback topic: the one without a suffix among its topics.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var feedback string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, "redbandit-demo-") && !strings.Contains(strings.TrimPrefix(name, "redbandit-demo-"), "-") &&
			!strings.HasSuffix(name, ".dlq") {
			feedback = name
		}
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics(feedback),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	codec, err := event.NewCodec(spec.Reference().Dim())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for n := 0; n < len(expected) && ctx.Err() == nil; {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			n++
			ev, err := codec.Decode(r.Value)
			if err != nil {
				t.Errorf("offset %d: %v", r.Offset, err)
				return
			}
			seen[ev.EventID]++
			w, ok := expected[ev.EventID]
			switch {
			case !ok:
				t.Errorf("event %s: no visit showed it", ev.EventID)
			case ev.Reward != w.reward || len(ev.ContextVector) != len(w.x):
				t.Errorf("event %s: reward %v, %d features; want %v, %d", ev.EventID, ev.Reward, len(ev.ContextVector), w.reward, len(w.x))
			default:
				for i := range w.x {
					if math.Abs(ev.ContextVector[i]-w.x[i]) > 1e-9 {
						t.Errorf("event %s: context %v, want the visit's %v", ev.EventID, ev.ContextVector, w.x)
						break
					}
				}
			}
		})
	}
	// Nothing more is committed after the expected events.
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	rd.PollFetches(short).EachRecord(func(r *kgo.Record) { t.Errorf("an extra event at offset %d", r.Offset) })
	for id := range expected {
		if seen[id] != 1 {
			t.Errorf("event %s emitted %d times, want once", id, seen[id])
		}
	}
}
