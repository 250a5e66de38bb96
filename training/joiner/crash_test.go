package joiner_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/trainer"
	"github.com/redbandit/redbandit/training/topic"
)

// TestExactlyOnceUnderSIGKILL runs the joiner as a real process (`redbandit
// joiner`, and `redbandit trainer`, which runs one too) against a real
// Kafka broker while decisions and rewards stream in, kills it with SIGKILL
// several times, and checks that the committed feedback events are exactly
// the expected ones, each once, and that the model folded each once.
func TestExactlyOnceUnderSIGKILL(t *testing.T) {
	addr := os.Getenv("REDBANDIT_TEST_KAFKA")
	if addr == "" {
		t.Skip("needs a real Kafka broker: REDBANDIT_TEST_KAFKA=host:port (scripts/kafka.sh up)")
	}
	brokers := []string{addr}
	began := time.Now()
	bin := filepath.Join(t.TempDir(), "redbandit")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/redbandit").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("%v: built", time.Since(began))
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	decisions, feedback, model := "decisions-"+run, "feedback-"+run, "m" // newLogWriter logs model m
	srv := redistest.Start(t)
	c := srv.Client()
	ids := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	w := store.Write{Model: model, Features: []string{"f0", "f1"}, Lambda: 1}
	for _, id := range ids {
		arm := linucb.NewArm(2, 1)
		p, _ := arm.Solve()
		w.Arms = append(w.Arms, store.ArmWrite{ID: id, Arm: arm, Params: p})
	}
	if _, err := w.Apply(context.Background(), c); err != nil {
		t.Fatal(err)
	}

	args := func(cmd string) []string {
		level := "warn"
		if os.Getenv("JOINER_TEST_LOG") != "" {
			level = os.Getenv("JOINER_TEST_LOG")
		}
		a := []string{"--redis", srv.URL(), "--model", model, "--log-level", level, cmd, "--brokers", addr, "--topic", feedback,
			"--partitions", "3", "--decisions-topic", decisions, "--reward-wait", "300ms",
			"--joiner-group", "joiner-" + run, "--transactional-id", "joiner-" + run}
		if cmd == "trainer" {
			a = append(a, "--group", "trainer-"+run, "--flush-interval", "100ms", "--allow-unsafe-redis")
		}
		return a
	}
	start := func(cmd string) *exec.Cmd {
		p := exec.Command(bin, args(cmd)...)
		p.Stderr = os.Stderr
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// The stream: 240 decisions of 3 products over about 6 s, each but
	// every fourth clicked once, right after it was logged.
	if err := topic.Ensure(context.Background(), brokers, 3, decisions, feedback, feedback+".dlq"); err != nil {
		t.Fatal(err)
	}
	w8 := newLogWriter(t, brokers, decisions)
	proc := start("joiner")
	var want []string
	produced := make(chan struct{})
	rng := rand.New(rand.NewPCG(1, 2))
	type visit struct {
		id    string
		x     []float64
		slate []string
		click int
	}
	var visits []visit
	for i := range 240 {
		v := visit{id: fmt.Sprintf("d%03d", i), x: []float64{float64(i%7) / 7, 1}, click: i % 4}
		perm := rng.Perm(len(ids))
		for _, k := range perm[:3] {
			v.slate = append(v.slate, ids[k])
		}
		visits = append(visits, v)
		for j, p := range v.slate {
			r := 0
			if j == v.click {
				r = 1
			}
			want = append(want, fmt.Sprintf("%s/%s=%d", v.id, p, r))
		}
	}
	sort.Strings(want)
	go func() {
		defer close(produced)
		for _, v := range visits {
			now := time.Now().UnixMilli()
			w8.decision(v.id, v.x, now, v.slate...)
			if v.click < 3 {
				w8.reward(v.id, v.slate[v.click], 1, now)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}()

	kills := 0
	cmds := []string{"joiner", "trainer"}
	for stream := true; stream || kills < 6; kills++ {
		time.Sleep(time.Duration(700+rand.IntN(900)) * time.Millisecond)
		if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = proc.Wait()
		proc = start(cmds[kills%2])
		select {
		case <-produced:
			stream = false
		default:
		}
	}
	// A joiner to the end (static membership: it takes the partitions
	// back at once), and a trainer in a group of its own (the killed
	// trainers' members hold theirs for a session timeout): it goes on
	// from the offsets the killed ones stored with the model.
	_ = proc.Process.Signal(syscall.SIGKILL)
	_ = proc.Wait()
	proc = start("joiner")
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	trained := make(chan error, 1)
	go func() {
		trained <- trainer.Run(ctx, trainer.Config{Brokers: brokers, Topic: feedback, Group: "trainer-final-" + run,
			Partitions: 3, Redis: c, Model: model, FlushInterval: 100 * time.Millisecond})
	}()
	defer func() {
		cancel()
		if err := <-trained; err != nil {
			t.Errorf("trainer: %v", err)
		}
	}()

	t.Logf("%v: stream produced, %d SIGKILLs", time.Since(began), kills)
	ctxs := map[string][]float64{}
	for _, v := range visits {
		ctxs[v.id] = v.x
	}
	got := events(t, drain(t, brokers, feedback, len(want), 3*time.Second), ctxs)
	if !slices.Equal(got, want) {
		t.Fatalf("after %d SIGKILLs: %d feedback events, want %d; first differences: %s", kills, len(got), len(want), diff(got, want))
	}
	t.Logf("%v: feedback events checked", time.Since(began))
	deadline := time.Now().Add(30 * time.Second)
	for {
		arms := readArms(t, c, model, 2, ids)
		if n := armEvents(arms); n == int64(len(want)) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the model folded %d events, want %d", n, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would show by now
	if n := armEvents(readArms(t, c, model, 2, ids)); n != int64(len(want)) {
		t.Fatalf("the model folded %d events, want %d", n, len(want))
	}
	t.Logf("%d SIGKILLs, %d feedback events, each once", kills, len(want))
}

// diff names a few entries in only one of two sorted lists.
func diff(got, want []string) string {
	var out []string
	gs, ws := map[string]int{}, map[string]int{}
	for _, g := range got {
		gs[g]++
	}
	for _, w := range want {
		ws[w]++
	}
	for k, n := range gs {
		if n != ws[k] {
			out = append(out, fmt.Sprintf("%s ×%d (want %d)", k, n, ws[k]))
		}
	}
	for k, n := range ws {
		if gs[k] == 0 {
			out = append(out, fmt.Sprintf("%s ×0 (want %d)", k, n))
		}
	}
	sort.Strings(out)
	if len(out) > 10 {
		out = out[:10]
	}
	return strings.Join(out, ", ")
}
