package trainer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/sidecar"
	"github.com/redbandit/redbandit/training/event"
)

// TestTrainerRedisKilled kills redis-server with SIGKILL eight times in the
// middle of the trainer's flushes — from the write hook, a few hundred
// microseconds after the write is sent, so the script may have run or not —
// and restarts it from its AOF (appendfsync everysec). The trainer rides
// through the outages: failed flushes are retried, a write that landed
// without a reply shows up as a conflict and the partitions are re-read, and
// a run that gives up is restarted, as a supervisor would. The model must end
// equal to the offline computation: no event lost, none counted twice.
func TestTrainerRedisKilled(t *testing.T) {
	const d, kills = 4, 8
	e, srv := newEnvRedis(t, 6, "--appendonly", "yes", "--appendfsync", "everysec")
	want := newRefModel(d)
	e.createModel(d, genEvents(7, 200, d, 40), want)
	codec, _ := event.NewCodec(d)
	stream := genEvents(8, 30000, d, 40)
	recs := make([]*kgo.Record, len(stream))
	for i, ev := range stream {
		recs[i] = avroRecord(t, codec, ev)
		want.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	const slices = 40 // produced one by one, so that flushes go on until the last kill

	var mu sync.Mutex                   // guards rng and left, used from the write hook
	rng := rand.New(rand.NewPCG(8, 8))  // the hook's
	pace := rand.New(rand.NewPCG(9, 9)) // the test loop's
	killed := make(chan struct{}, 1)
	left := kills
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	exited := make(chan error, 1)
	supervise := func() {
		cfg := e.config()
		cfg.FlushInterval = 30 * time.Millisecond
		cfg.MaxDirty = 10
		cfg.beforeApply = func(int) {
			mu.Lock()
			defer mu.Unlock()
			if left == 0 || rng.IntN(4) != 0 {
				return
			}
			left--
			delay := time.Duration(rng.IntN(1500)) * time.Microsecond
			go func() {
				time.Sleep(delay)
				srv.Kill()
				killed <- struct{}{}
			}()
		}
		go func() { exited <- Run(ctx, cfg) }()
	}
	supervise()
	restarts, produced := 0, 0
	deadline := time.Now().Add(120 * time.Second)
	for {
		select {
		case <-killed:
			time.Sleep(time.Duration(50+pace.IntN(200)) * time.Millisecond)
			srv.Restart()
			restarts++
		case err := <-exited:
			t.Logf("the trainer stopped (%v); restarting it", err)
			supervise()
		case <-time.After(50 * time.Millisecond):
			if produced < slices {
				e.produce(recs[produced*len(recs)/slices : (produced+1)*len(recs)/slices]...)
				produced++
			}
		}
		mu.Lock()
		pending := kills - left - restarts // killed, not restarted yet
		mu.Unlock()
		if produced == slices && pending == 0 {
			if ok, _, _ := e.caughtUp(context.Background()); ok {
				break
			}
		}
		if time.Now().After(deadline) {
			_, lag, _ := e.caughtUp(context.Background())
			t.Fatalf("after %d of %d kills: not caught up: %s", restarts, kills, lag)
		}
	}
	cancel()
	if restarts < kills/2 {
		t.Errorf("only %d kills landed in flushes, want at least %d", restarts, kills/2)
	}
	t.Logf("%d kills during flushes", restarts)
	e.check(want)
}

// TestTrainerSIGSTOP pauses a trainer process with SIGSTOP past its session
// timeout while it holds unflushed events, lets a second trainer take its
// partitions over and fold the rest of the stream, then resumes the first
// (SIGCONT). Its stale state must be fenced — its writes refused, nothing
// written twice — and the model must equal the offline computation.
func TestTrainerSIGSTOP(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	const d = 4
	e, url := newEnvURL(t, 6)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	e.produceStream(201, 10000, d, 100, want)
	a := e.startChild(url)
	if !a.waitApplies(2, 30*time.Second) {
		t.Fatal("the first trainer never wrote")
	}
	e.produceStream(202, 5000, d, 100, want) // A holds some of these unflushed when it stops
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Count A's writes once it is stopped and the lines it printed before
	// have been read from its stdout.
	waitStopped(t, a.cmd.Process.Pid)
	time.Sleep(200 * time.Millisecond)
	stoppedAt := a.applies.Load()
	b := e.startChild(url)
	e.produceStream(203, 10000, d, 100, want)
	e.waitCaughtUp(60 * time.Second) // B alone got there: A's session expired
	if a.applies.Load() != stoppedAt {
		t.Fatalf("the stopped trainer wrote %d times while stopped", a.applies.Load()-stoppedAt)
	}
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// A wakes with stale state and tries to flush it; give it the time to.
	time.Sleep(2 * time.Second)
	e.produceStream(204, 2000, d, 100, want)
	e.waitCaughtUp(60 * time.Second)
	for name, c := range map[string]*child{"first": a, "second": b} {
		if err := c.term(); err != nil {
			t.Errorf("%s trainer exit: %v", name, err)
		}
	}
	e.check(want)
}

// TestBrokerRestart stops and restarts the real Kafka broker while the
// trainer and the sidecar run: the sidecar answers 503 for feedback while
// the broker is away and keeps serving recommendations; once it is back,
// feedback is accepted again and the trainer resumes. Every event that
// Kafka acknowledged is folded exactly once. It needs a real broker it may
// stop: REDBANDIT_TEST_KAFKA and REDBANDIT_TEST_KAFKA_CTL (a command taking
// stop or start, e.g. "bash scripts/kafka.sh").
func TestBrokerRestart(t *testing.T) {
	ctl := os.Getenv("REDBANDIT_TEST_KAFKA_CTL")
	if ctl == "" || os.Getenv(realKafkaEnv) == "" {
		t.Skip("needs a real Kafka broker it may stop: REDBANDIT_TEST_KAFKA and REDBANDIT_TEST_KAFKA_CTL")
	}
	broker := func(verb string) {
		t.Helper()
		args := append(strings.Fields(ctl), verb)
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", ctl, verb, err, out)
		}
	}
	defer broker("start") // leave the broker running for the tests after this one
	const d = 4
	e := newEnv(t, 6)
	want := newRefModel(d)
	e.createModel(d, genEvents(21, 100, d, 20), want)
	prod, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.RecordDeliveryTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	sc := sidecar.New(sidecar.Config{Redis: e.redis, Model: testModel, Producer: prod, Topic: e.topic, Timeout: time.Second})
	hs := httptest.NewServer(sc.Handler())
	defer hs.Close()
	post := func(path, body string) int {
		resp, err := http.Post(hs.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	x := []float64{1, 0.5, 0, 1}
	feedback := `{"product_id": "p1", "reward": 1, "context": [1, 0.5, 0, 1]}`
	var r runner
	r.t = t
	stop := r.start(e.config())
	e.produceStream(22, 3000, d, 20, want)
	if code := post("/v1/feedback", feedback); code != 202 {
		t.Fatalf("feedback before: %d", code)
	}
	want.add("p1", x, 1)
	e.waitCaughtUp(60 * time.Second)

	broker("stop")
	if code := post("/v1/feedback", feedback); code != 503 {
		t.Fatalf("feedback with the broker down: %d, want 503", code)
	}
	// A 503 says the outcome is unknown: this event may still reach Kafka
	// when the broker is back (the producer retries), so the check at the
	// end allows p1 either count.
	if code := post("/v1/recommend", `{"context": [1, 0.5, 0, 1], "k": 3}`); code != 200 {
		t.Fatalf("recommend with the broker down: %d, want 200", code)
	}
	broker("start")
	deadline := time.Now().Add(60 * time.Second)
	for post("/v1/feedback", feedback) != 202 {
		if time.Now().After(deadline) {
			t.Fatal("feedback still refused a minute after the broker came back")
		}
		time.Sleep(500 * time.Millisecond)
	}
	want.add("p1", x, 1)
	e.produceStream(23, 3000, d, 20, want)
	e.waitCaughtUp(90 * time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// p1 got the two accepted events, plus possibly the one answered 503.
	got, err := store.ReadArms(context.Background(), e.redis, testModel, d, 1, []string{"p1"})
	if err != nil {
		t.Fatal(err)
	}
	if extra := got[0].Arm.N() - want.arms["p1"].n; extra == 1 {
		t.Log("the event answered 503 was delivered after all (allowed: the 503 said unknown)")
		want.add("p1", x, 1)
	} else if extra != 0 {
		t.Fatalf("p1 has %d events, want %d or one more", got[0].Arm.N(), want.arms["p1"].n)
	}
	e.check(want)
}

// waitStopped waits until process pid is in the stopped state (T in
// /proc/<pid>/stat).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		// The state follows the command name, which is in parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped: %s", pid, stat)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
