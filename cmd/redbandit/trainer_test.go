package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/trainer"
)

// TestProduceAndTrainer replays a CSV log through `produce` (JSON, so the
// rewards may be fractions) and folds it with `trainer --bootstrap`, then
// checks the model's event count and one product's n by hand.
func TestProduceAndTrainer(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	srv := redistest.Start(t, "--appendonly", "yes") // the model writers refuse a Redis that persists nothing
	dir := t.TempDir()
	history := filepath.Join(dir, "history.csv")
	stream := filepath.Join(dir, "stream.csv")
	if err := os.WriteFile(history, []byte("event_id,f1,f2,product_id,response\nh1,1,0,a,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString("event_id,f1,f2,product_id,response\n")
	for i := 0; i < 300; i++ {
		fmt.Fprintf(&buf, "s%d,%d,1,%c,0.5\n", i, i%3, 'a'+rune(i%3))
	}
	if err := os.WriteFile(stream, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	out, err := run(t, "produce", "--brokers", brokers, "--csv", stream, "--format", "json", "--partitions", "3")
	if err != nil || !strings.Contains(out, "produced 300 events") {
		t.Fatalf("produce: %v\n%s", err, out)
	}
	if _, err := run(t, "produce", "--brokers", brokers, "--csv", stream); err == nil || !strings.Contains(err.Error(), "bad-reward") {
		t.Fatalf("produce avro with fractional rewards: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		app := newApp()
		app.Writer = &bytes.Buffer{}
		done <- app.RunContext(ctx, []string{"redbandit", "--redis", srv.URL(), "--model", "cli", "--log-level", "warn",
			"trainer", "--brokers", brokers, "--bootstrap", history, "--flush-interval", "50ms"})
	}()
	client := srv.Client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, err := store.ReadMeta(context.Background(), client, "cli")
		if err == nil && m.Events == 301 {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("model after 30s: %+v %v (trainer: %v)", m, err, <-done)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	arms, err := store.ReadArms(context.Background(), client, "cli", 2, 1, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	// a: the history row plus the 100 stream rows with i%3 == 0 (x = (0,1)).
	if a := arms[0].Arm; a.N() != 101 || a.A()[0] != 2 || a.A()[3] != 101 || a.B()[1] != 50 {
		t.Fatalf("arm a: n %d A %v b %v", a.N(), a.A(), a.B())
	}
}

// TestTrainerBadConfigBeforeBootstrap: the command checks the trainer's
// config before it bootstraps, so a bad one folds nothing; and without
// --bootstrap a missing model fails with the hint how to create it.
func TestTrainerBadConfigBeforeBootstrap(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	history := filepath.Join(t.TempDir(), "history.csv")
	if err := os.WriteFile(history, []byte("event_id,f1,f2,product_id,response\nh1,1,0,a,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "--redis", srv.URL(), "--model", "cli", "trainer", "--brokers", "127.0.0.1:1",
		"--topic", "t", "--dlq-topic", "t", "--bootstrap", history)
	if !errors.Is(err, trainer.ErrBadConfig) {
		t.Fatalf("dead-letter topic = topic: %v, want ErrBadConfig", err)
	}
	if _, err := store.ReadMeta(context.Background(), srv.Client(), "cli"); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("the model after a bad config: %v, want none", err)
	}
	_, err = run(t, "--redis", srv.URL(), "--model", "cli", "trainer", "--brokers", "127.0.0.1:1")
	if !errors.Is(err, store.ErrNoModel) || !strings.Contains(err.Error(), "--bootstrap") {
		t.Fatalf("no model: %v, want ErrNoModel with the hint", err)
	}
}
