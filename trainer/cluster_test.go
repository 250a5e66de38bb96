package trainer

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/training/event"
)

// TestClusterFailover runs the trainer, as rb-trainer, against a Redis
// Cluster of the shipped deployment (three primaries, a replica each,
// cluster-node-timeout 1 s) and SIGKILLs the primary of the model's slot
// up to 1.5 ms after a flush's write is sent, after cutting that primary's
// replica off (paused, and dropped by the primary) so that it misses the
// last flushes. The cluster
// promotes the replica by itself; the client follows the slot to it. The
// promoted replica must hold fewer events than the killed primary had and
// be a consistent snapshot (the offline rebuild of the events below its
// stored offsets), and at the end the model must equal the offline rebuild
// of every event, each once: A and b within 1e-9, counts exact.
func TestClusterFailover(t *testing.T) {
	const d, partitions = 4, 6
	cl := redistest.StartCluster(t, deployedConf)
	e, _ := newEnvRedis(t, partitions) // its bare server goes unused
	e.redis = cl.Client(acl.TrainerUser, redistest.TestPasswords.Trainer)
	op := cl.Client(redistest.Operator, redistest.OperatorPassword)
	primary, replicas := cl.Primary(store.RootKey(testModel))
	if len(replicas) != 1 {
		t.Fatalf("the model's primary %s has %d replicas, want 1", primary.Addr, len(replicas))
	}
	replica := replicas[0]
	s := &stream{d: d, history: genEvents(31, 200, d, 40), events: map[*kgo.Record]event.Event{}}
	e.createModel(d, s.history, newRefModel(d))
	codec := newCodec(t, d)

	var mu sync.Mutex // guards armed, used from the write hook
	armed := false
	rng := rand.New(rand.NewPCG(5, 5)) // the hook's; guarded by mu
	var hold sync.Mutex                // held while the test reads a snapshot: no write starts
	killed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := supervise(ctx, t, func() Config {
		cfg := e.config()
		cfg.FlushInterval = 30 * time.Millisecond
		cfg.beforeApply = func(int) {
			hold.Lock()
			hold.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if !armed {
				return
			}
			armed = false
			delay := time.Duration(rng.IntN(1500)) * time.Microsecond
			go func() {
				time.Sleep(delay)
				primary.Kill()
				killed <- struct{}{}
			}()
		}
		return cfg
	})
	waitFor := sv.waitFor
	events := func(c rueidis.Client) int64 { return modelEvents(ctx, t, c) }
	caughtUp := func() bool { ok, _, _ := e.caughtUp(ctx); return ok }

	for b := range 10 {
		e.produceEvents(s, codec, genEvents(uint64(200+b), 500, d, 40))
	}
	waitFor("caught up before the failover", caughtUp)
	cl.WaitHealthy() // the replica holds every write so far

	// Cut the replica off: paused, it reads nothing, and a value larger
	// than the socket buffers and the primary's (lowered) output buffer
	// limit for replicas makes the primary drop the link. What the primary
	// writes from then on, the replica never gets.
	pop := primary.OperatorClient()
	if err := pop.Do(ctx, pop.B().ConfigSet().ParameterValue().ParameterValue("client-output-buffer-limit", "replica 1mb 0 0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	replica.Pause()
	filler := "redistest:filler:{" + testModel + "}" // the model's slot: its primary
	if err := op.Do(ctx, op.B().Set().Key(filler).Value(strings.Repeat("x", 32<<20)).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	waitFor("the primary drops its replica", func() bool {
		info, err := pop.Do(ctx, pop.B().Info().Section("replication").Build()).ToString()
		return err == nil && strings.Contains(info, "connected_slaves:0")
	})
	before := events(op)
	for b := range 4 {
		e.produceEvents(s, codec, genEvents(uint64(300+b), 500, d, 40))
	}
	waitFor("the primary folds events the replica misses", func() bool { return events(op) > before+500 })
	lastPrimary := events(op)
	mu.Lock()
	armed = true
	mu.Unlock()
	e.produceEvents(s, codec, genEvents(400, 500, d, 40))
	var killedAt time.Time
	select {
	case <-killed:
		killedAt = time.Now()
	case <-time.After(30 * time.Second):
		t.Fatal("no flush within 30s to kill the primary in")
	}
	hold.Lock()
	if ev := events(op); ev > lastPrimary {
		lastPrimary = ev // the flush the kill hit may have run
	}
	replica.Resume()
	promoted := cl.WaitPromoted(ctx, store.RootKey(testModel), primary)
	if promoted != replica {
		t.Fatalf("%s was promoted, want the killed primary's replica %s", promoted.Addr, replica.Addr)
	}
	t.Logf("the replica was promoted %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	// The promoted replica lost the tail, and holds a consistent snapshot.
	var lost int64
	waitFor("the model readable on the promoted replica", func() bool { lost = events(op); return lost >= 0 })
	if lost >= lastPrimary {
		t.Fatalf("the promoted replica has %d events, the primary had %d: nothing was lost, the test proves nothing", lost, lastPrimary)
	}
	t.Logf("the promoted replica has %d events, the killed primary had at least %d", lost, lastPrimary)
	e.checkSnapshot(op, s, partitions)
	hold.Unlock()

	for b := range 6 {
		e.produceEvents(s, codec, genEvents(uint64(500+b), 500, d, 40))
	}
	waitFor("caught up on the new primary", caughtUp)
	cancel()
	t.Logf("%d trainer runs", sv.runs)
	e.check(s.rebuild(map[int32]int64{0: 1 << 62, 1: 1 << 62, 2: 1 << 62, 3: 1 << 62, 4: 1 << 62, 5: 1 << 62}))
}
