package trainer

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/event"
)

// Environment of a child trainer process (TestChildTrainer).
const (
	childEnv        = "REDBANDIT_TRAINER_CHILD"
	childBrokersEnv = "REDBANDIT_TRAINER_CHILD_BROKERS"
	childRedisEnv   = "REDBANDIT_TRAINER_CHILD_REDIS"
	childTopicEnv   = "REDBANDIT_TRAINER_CHILD_TOPIC"
	childSessionEnv = "REDBANDIT_TRAINER_CHILD_SESSION"
)

// TestChildTrainer is not a test: the crash tests run the test binary again
// with REDBANDIT_TRAINER_CHILD=1 to get a trainer in its own process, which
// they kill with SIGKILL. It prints "apply" before each write attempt, and
// stops gracefully on SIGTERM.
func TestChildTrainer(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("only runs as a child process of the crash tests")
	}
	client, err := store.Dial(os.Getenv(childRedisEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	session, err := time.ParseDuration(os.Getenv(childSessionEnv))
	if err != nil {
		t.Fatal(err)
	}
	topic := os.Getenv(childTopicEnv)
	cfg := Config{
		Brokers: strings.Split(os.Getenv(childBrokersEnv), ","), Topic: topic, Group: topic + "-crash", Model: testModel,
		Redis: client, FlushInterval: 30 * time.Millisecond, MaxDirty: 60,
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.SessionTimeout(session),
			kgo.RebalanceTimeout(2 * time.Second)},
		beforeApply: func(int) { fmt.Println("apply") },
	}
	if os.Getenv("TRAINER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("pid", os.Getpid())
	}
	if err := Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// child is a trainer process owned by a test.
type child struct {
	cmd     *exec.Cmd
	applies atomic.Int64 // write attempts announced
	done    chan struct{}
}

func (e *env) startChild(redisURL string) *child {
	e.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildTrainer$", "-test.count=1")
	session := 600 * time.Millisecond
	if e.real {
		session = 6 * time.Second
	}
	cmd.Env = append(os.Environ(), childEnv+"=1", childBrokersEnv+"="+strings.Join(e.brokers, ","), childRedisEnv+"="+redisURL,
		childTopicEnv+"="+e.topic, childSessionEnv+"="+session.String())
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { // owned by c: ends when the process's stdout closes
		defer close(c.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "apply" {
				c.applies.Add(1)
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	e.t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
	_ = c.cmd.Wait()
}

// term stops the child with SIGTERM and returns its exit error.
func (c *child) term() error {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	<-c.done
	return c.cmd.Wait()
}

// waitApplies waits until the child has announced n write attempts.
func (c *child) waitApplies(n int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for c.applies.Load() < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// produceStream produces n seeded Avro events and adds them to want.
func (e *env) produceStream(seed uint64, n, d, products int, want *refModel) {
	e.t.Helper()
	codec, _ := event.NewCodec(d)
	evs := genEvents(seed, n, d, products)
	for start := 0; start < n; start += 10000 {
		end := min(start+10000, n)
		recs := make([]*kgo.Record, 0, end-start)
		for _, ev := range evs[start:end] {
			recs = append(recs, avroRecord(e.t, codec, ev))
			want.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
		e.produce(recs...)
	}
}

// TestTrainerSIGKILL kills a trainer process with SIGKILL twelve times while
// it consumes 100,000 events — half of the kills right as a write is sent —
// restarting it each time; the model must count every event once.
func TestTrainerSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	const d, n = 4, 100000
	e, url := newEnvURL(t, 6)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	rng := rand.New(rand.NewPCG(12, 12))
	const kills = 12
	for i := 0; i < kills; i++ {
		e.produceStream(uint64(100+i), n/kills, d, 200, want)
		c := e.startChild(url)
		if i%2 == 0 {
			// Kill as the k-th write attempt goes out.
			if !c.waitApplies(int64(1+rng.IntN(5)), 30*time.Second) {
				t.Fatalf("kill %d: the trainer never wrote", i)
			}
		} else {
			// Kill at a random time once it works. (A member killed while
			// joining is never expired by kfake, which would then wait for
			// it forever: real Kafka expires it after its session timeout.)
			if !c.waitApplies(1, 30*time.Second) {
				t.Fatalf("kill %d: the trainer never wrote", i)
			}
			time.Sleep(time.Duration(rng.IntN(800)) * time.Millisecond)
		}
		c.kill()
		ok, lag, _ := e.caughtUp(context.Background())
		t.Logf("kill %d after %d write attempts; caught up %v %s", i, c.applies.Load(), ok, lag)
	}
	e.produceStream(99, n-kills*(n/kills), d, 200, want)
	c := e.startChild(url)
	e.waitCaughtUp(120 * time.Second)
	if err := c.term(); err != nil {
		t.Fatalf("trainer exit: %v", err)
	}
	e.check(want)
}

// TestTrainerThreeMembersOneKilled runs three trainer processes in one group
// over 6 partitions while events arrive, and kills one of them mid-stream.
func TestTrainerThreeMembersOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	const d = 4
	e, url := newEnvURL(t, 6)
	want := newRefModel(d)
	e.createModel(d, nil, want)
	members := []*child{e.startChild(url), e.startChild(url), e.startChild(url)}
	for i := 0; i < 10; i++ {
		before := members[1].applies.Load()
		e.produceStream(uint64(20+i), 3000, d, 60, want)
		if i == 4 {
			// Kill member 1 as it writes part of this batch.
			if !members[1].waitApplies(before+1, 10*time.Second) {
				t.Fatal("member 1 never wrote")
			}
			members[1].kill()
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.waitCaughtUp(120 * time.Second)
	for i, m := range members {
		t.Logf("member %d: %d write attempts", i, m.applies.Load())
		if i != 1 {
			if err := m.term(); err != nil {
				t.Fatalf("member %d exit: %v", i, err)
			}
		}
	}
	e.check(want)
}
