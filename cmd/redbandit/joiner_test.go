package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/joiner"
)

// TestJoinerFlags: the trainer checks its joiner's flags before it
// bootstraps (a bad one folds nothing), and the joiner command refuses to
// run without a decisions topic.
func TestJoinerFlags(t *testing.T) {
	srv := redistest.Start(t, "--appendonly", "yes")
	history := filepath.Join(t.TempDir(), "history.csv")
	if err := os.WriteFile(history, []byte("event_id,f1,f2,product_id,response\nh1,1,0,a,1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"--impressions", "below"}, {"--reward-wait", "-1s"}, {"--decisions-topic", "feedback-events"}} {
		args := append([]string{"--redis", srv.URL(), "--model", "cli", "trainer", "--brokers", "127.0.0.1:1", "--bootstrap", history}, bad...)
		if _, err := run(t, args...); !errors.Is(err, joiner.ErrBadConfig) {
			t.Errorf("trainer %v: %v, want joiner.ErrBadConfig", bad, err)
		}
	}
	if _, err := store.ReadMeta(context.Background(), srv.Client(), "cli"); !errors.Is(err, store.ErrNoModel) {
		t.Fatalf("the model after bad joiner flags: %v, want none", err)
	}
	if _, err := run(t, "joiner", "--brokers", "127.0.0.1:1", "--decisions-topic", ""); err == nil {
		t.Fatal("joiner --decisions-topic '': no error")
	}
}
