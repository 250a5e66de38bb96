package trainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/lua"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/ops/acl"
	"github.com/redbandit/redbandit/ops/doctor"
	"github.com/redbandit/redbandit/training/event"
)

// The durability matrix runs the trainer against Redis exactly as a user
// deploys it: the repository's redis.conf (AOF everysec) and the users file
// `redbandit acl` writes (the trainer connects as rb-trainer; an extra
// operator user does what an operator does by hand: ACL LIST, REPLICAOF).

const deployedConf = "../redis.conf"

// deployedEnv is newEnv (in-process or real Kafka) whose Redis client is
// rb-trainer's on addr.
func deployedEnv(t *testing.T, partitions int32, addr string) *env {
	t.Helper()
	e, _ := newEnvRedis(t, partitions) // its bare server goes unused
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true,
		Username: acl.TrainerUser, Password: redistest.TestPasswords.Trainer})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e.redis = c
	return e
}

// stream is the events of a test: the bootstrapped history, then the
// records produced, each with the partition and offset Kafka gave it.
type stream struct {
	d       int
	history []event.Event
	recs    []*kgo.Record
	events  map[*kgo.Record]event.Event
}

// rebuild is the offline model of the history and of the records below
// the given stored offsets: what the model must hold, each event once.
func (s *stream) rebuild(offsets map[int32]int64) *refModel {
	m := newRefModel(s.d)
	for _, ev := range s.history {
		m.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
	for _, r := range s.recs {
		if r.Offset < offsets[r.Partition] {
			ev := s.events[r]
			m.add(ev.ProductID, ev.ContextVector, ev.Reward)
		}
	}
	return m
}

// offsets reads the stored offsets of the partitions.
func (e *env) offsets(ctx context.Context, c rueidis.Client, partitions int32) (map[int32]int64, error) {
	ps := make([]int32, partitions)
	for p := range partitions {
		ps[p] = p
	}
	stored, err := store.ReadOffsets(ctx, c, testModel, e.topic, ps)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(stored))
	for p, v := range stored {
		if out[p], err = store.ParseOffset(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// diff compares the model read through c with want as check does, and
// describes the first differences ("" if none).
func diff(ctx context.Context, c rueidis.Client, want *refModel) (string, error) {
	meta, err := store.ReadMeta(ctx, c, testModel)
	if err != nil {
		return "", err
	}
	var out []string
	if meta.Events != want.events || meta.Arms != len(want.arms) {
		out = append(out, fmt.Sprintf("%d events and %d arms, want %d and %d", meta.Events, meta.Arms, want.events, len(want.arms)))
	}
	ids := slices.Sorted(maps.Keys(want.arms))
	stored, err := store.ReadArms(ctx, c, testModel, want.d, 1, ids)
	if err != nil {
		return "", err
	}
	for _, s := range stored {
		w := want.arms[s.ID]
		if s.Version == 0 || s.Arm.N() != w.n || !near(s.Arm.A(), w.a) || !near(s.Arm.B(), w.b) || !near([]float64{s.Arm.Rewards()}, []float64{w.r}) {
			out = append(out, fmt.Sprintf("product %s: n %d, want %d (or A, b beyond 1e-9)", s.ID, s.Arm.N(), w.n))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return strings.Join(out, "; "), nil
}

// checkSnapshot checks that the model read through c equals the offline
// rebuild of the events below its stored offsets. The trainer may write
// meanwhile: a read is kept only if the offsets did not move during it.
func (e *env) checkSnapshot(c rueidis.Client, s *stream, partitions int32) {
	e.t.Helper()
	ctx := context.Background()
	for try := 0; ; try++ {
		before, err1 := e.offsets(ctx, c, partitions)
		want := s.rebuild(before)
		d, err2 := diff(ctx, c, want)
		after, err3 := e.offsets(ctx, c, partitions)
		if errors.Is(err2, store.ErrNoModel) {
			e.t.Fatalf("the model is gone: %v", err2)
		}
		if err1 == nil && err2 == nil && err3 == nil && fmt.Sprint(before) == fmt.Sprint(after) {
			if d != "" {
				e.t.Errorf("the model differs from the offline rebuild at offsets %v: %s", before, d)
			}
			return
		}
		if try == 50 {
			e.t.Fatalf("no stable read of the model: %v %v %v", err1, err2, err3)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// produceEvents produces events as Avro records and adds them to s.
func (e *env) produceEvents(s *stream, codec *event.Codec, evs []event.Event) {
	e.t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, ev := range evs {
		recs[i] = avroRecord(e.t, codec, ev)
		s.events[recs[i]] = ev
	}
	e.produce(recs...) // sets each record's partition and offset
	s.recs = append(s.recs, recs...)
}

// sortedACL returns ACL LIST with each user's rules sorted.
func sortedACL(t *testing.T, c rueidis.Client) []string {
	t.Helper()
	l, err := c.Do(context.Background(), c.B().AclList().Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range l {
		f := strings.Fields(line)
		slices.Sort(f[2:])
		l[i] = strings.Join(f, " ")
	}
	return l
}

// supervisor keeps a trainer running for a test that kills what it runs
// against: it starts Run with a fresh config from cfg, and starts it again
// whenever it stops while the test waits.
type supervisor struct {
	t      *testing.T
	ctx    context.Context
	cfg    func() Config
	exited chan error
	runs   int
}

func supervise(ctx context.Context, t *testing.T, cfg func() Config) *supervisor {
	sv := &supervisor{t: t, ctx: ctx, cfg: cfg, exited: make(chan error, 1)}
	sv.start()
	return sv
}

func (sv *supervisor) start() {
	sv.runs++
	cfg := sv.cfg()
	go func() { sv.exited <- Run(sv.ctx, cfg) }()
}

// restartIfStopped starts the trainer again if it has stopped.
func (sv *supervisor) restartIfStopped(wait time.Duration) {
	select {
	case err := <-sv.exited:
		sv.t.Logf("the trainer stopped (%v); restarting it", err)
		sv.start()
	case <-time.After(wait):
	}
}

// waitFor keeps the trainer running until cond holds, and fails the test
// if it does not within 60 s.
func (sv *supervisor) waitFor(what string, cond func() bool) {
	sv.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		sv.restartIfStopped(20 * time.Millisecond)
		if time.Now().After(deadline) {
			sv.t.Fatalf("%s: not within 60s", what)
		}
	}
}

// modelEvents returns the events folded into the test model as c reads
// it, or -1 (logged) when it cannot be read within 2 s: during a failover
// the node may be gone or not yet serving.
func modelEvents(ctx context.Context, t *testing.T, c rueidis.Client) int64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	m, err := store.ReadMeta(ctx, c, testModel)
	if err != nil {
		t.Logf("read the model: %v", err)
		return -1
	}
	return m.Events
}

// checkDeployment checks what a restart must keep besides the model: every
// user has exactly its rules, and doctor's durability checks pass as
// rb-trainer.
func checkDeployment(t *testing.T, e *env, op rueidis.Client, rules []string) {
	t.Helper()
	if got := sortedACL(t, op); !slices.Equal(got, rules) {
		t.Errorf("ACL rules changed:\n%q\nwant\n%q", got, rules)
	}
	err := doctor.Check(context.Background(), e.redis)
	for try := 0; err != nil && !errors.Is(err, doctor.ErrUnsafe) && try < 10; try++ {
		time.Sleep(20 * time.Millisecond) // the client's connection died with the server
		err = doctor.Check(context.Background(), e.redis)
	}
	if err != nil {
		t.Errorf("durability check as rb-trainer: %v", err)
	}
}

// TestDeployedRedisKilled SIGKILLs the shipped deployment's redis-server at
// least six times in the middle of the trainer's flushes (from the write
// hook, up to 1.5 ms after the write is sent, so the write may have run or
// not) and restarts it from its AOF. After each restart, before the trainer
// writes again, the model must equal the offline rebuild of the events
// below its stored offsets and every user must have its rules; at the end
// the model must hold every event exactly once. With the default user of
// older users files (no replay rights) the first restart loses the model.
func TestDeployedRedisKilled(t *testing.T) {
	const d, kills, partitions = 4, 6, 6
	srv := redistest.StartDeployed(t, deployedConf)
	op := srv.OperatorClient()
	rules := sortedACL(t, op)
	e := deployedEnv(t, partitions, srv.Addr)
	s := &stream{d: d, history: genEvents(7, 200, d, 40), events: map[*kgo.Record]event.Event{}}
	e.createModel(d, s.history, newRefModel(d))
	codec := newCodec(t, d)

	var mu sync.Mutex                    // guards rng and left, used from the write hook
	rng := rand.New(rand.NewPCG(11, 11)) // the hook's
	left := kills
	var hold sync.Mutex // held by the test while it checks a restarted server: no write starts
	killed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := supervise(ctx, t, func() Config {
		cfg := e.config()
		cfg.FlushInterval = 30 * time.Millisecond
		cfg.MaxDirty = 10
		cfg.beforeApply = func(int) {
			hold.Lock() // waits while the test checks a restarted server
			hold.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if left == 0 || rng.IntN(3) != 0 {
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
		return cfg
	})
	restarts, batch := 0, 0
	deadline := time.Now().Add(120 * time.Second)
	for {
		select {
		case <-killed:
			hold.Lock()
			srv.Restart()
			restarts++
			op = srv.OperatorClient()
			e.checkSnapshot(op, s, partitions)
			checkDeployment(t, e, op, rules)
			hold.Unlock()
		case err := <-sv.exited:
			t.Logf("the trainer stopped (%v); restarting it", err)
			sv.start()
		case <-time.After(50 * time.Millisecond):
			mu.Lock()
			more := left > 0 || batch < 30
			mu.Unlock()
			if more && batch < 200 {
				e.produceEvents(s, codec, genEvents(uint64(100+batch), 500, d, 40))
				batch++
			}
		}
		mu.Lock()
		done := left == 0 && restarts == kills
		mu.Unlock()
		if done && batch >= 30 {
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
	t.Logf("%d kills during flushes, %d events", restarts, len(s.recs))
	if restarts < 5 {
		t.Errorf("%d kills landed in flushes, want at least 5", restarts)
	}
	e.check(s.rebuild(map[int32]int64{0: 1 << 62, 1: 1 << 62, 2: 1 << 62, 3: 1 << 62, 4: 1 << 62, 5: 1 << 62}))
	checkDeployment(t, e, srv.OperatorClient(), rules)
	// The restarts emptied the script cache; the trainer's flushes since
	// the last one put the scoring script back for callers by SHA that may
	// not send it.
	serve := srv.ClientAs(acl.ServeUser, redistest.TestPasswords.Serve)
	args := append([]string{"5", "0.1"}, slices.Repeat([]string{"0.5"}, d)...)
	err := serve.Do(context.Background(), serve.B().EvalshaRo().Sha1(lua.RecommendSHA()).Numkeys(1).
		Key(store.RootKey(testModel)).Arg(args...).Build()).Error()
	if err != nil {
		t.Errorf("EVALSHA_RO as %s after the restarts: %v", acl.ServeUser, err)
	}
}

// proxy forwards TCP connections to a backend that a test can switch, as a
// virtual IP or DNS name moves to a promoted replica; switching closes the
// open connections.
type proxy struct {
	l       net.Listener
	mu      sync.Mutex // guards backend and conns
	backend string
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func newProxy(t *testing.T, backend string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, backend: backend, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		l.Close()
		p.switchTo("")
		p.wg.Wait()
	})
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		out, err := net.DialTimeout("tcp", p.backend, time.Second)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// switchTo sends new connections to addr and closes the open ones.
func (p *proxy) switchTo(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backend = addr
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) addr() string { return p.l.Addr().String() }

// TestDeployedFailover kills the primary of the shipped deployment and
// promotes its replica (a second redis-server, REPLICAOF NO ONE) while the
// trainer folds a stream; the trainer reaches Redis through an address that
// moves to the new primary. The replica is paused (SIGSTOP) before the
// primary's last writes, so it misses them: the test checks that its model
// and stored offsets are behind the primary's, that it is still a
// consistent snapshot (the offline rebuild of the events below its
// offsets), and that the trainer, whose writes are then refused by the
// offset guards, re-reads the offsets and replays the lost tail: the model
// ends with every event exactly once.
func TestDeployedFailover(t *testing.T) {
	const d, partitions = 4, 6
	primary := redistest.StartDeployed(t, deployedConf)
	_, port, _ := net.SplitHostPort(primary.Addr)
	replica := redistest.StartDeployed(t, deployedConf, "--replicaof", "127.0.0.1", port,
		"--masteruser", redistest.Operator, "--masterauth", redistest.OperatorPassword)
	pop, rop := primary.OperatorClient(), replica.OperatorClient()
	rules := sortedACL(t, pop)
	px := newProxy(t, primary.Addr)
	e := deployedEnv(t, partitions, px.addr())
	s := &stream{d: d, history: genEvents(21, 200, d, 40), events: map[*kgo.Record]event.Event{}}
	e.createModel(d, s.history, newRefModel(d))
	codec := newCodec(t, d)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sv := supervise(ctx, t, func() Config {
		cfg := e.config()
		cfg.FlushInterval = 30 * time.Millisecond
		return cfg
	})
	waitFor := sv.waitFor
	events := func(c rueidis.Client) int64 { return modelEvents(ctx, t, c) }
	caughtUp := func() bool { ok, _, _ := e.caughtUp(ctx); return ok }

	for b := range 10 {
		e.produceEvents(s, codec, genEvents(uint64(200+b), 500, d, 40))
	}
	waitFor("caught up before the failover", caughtUp)
	waitFor("replica in sync", func() bool { return events(rop) == events(pop) })

	replica.Pause()
	before := events(pop)
	for b := range 4 {
		e.produceEvents(s, codec, genEvents(uint64(300+b), 500, d, 40))
	}
	waitFor("the primary folds events the replica misses", func() bool { return events(pop) > before+500 })
	lastPrimary := events(pop)
	primaryOffsets, err := e.offsets(ctx, pop, partitions)
	if err != nil {
		t.Fatal(err)
	}
	primary.Kill()
	replica.Resume()
	if err := rop.Do(ctx, rop.B().Replicaof().No().One().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	px.switchTo(replica.Addr)

	// The promoted replica lost the tail, and holds a consistent snapshot.
	replicaOffsets, err := e.offsets(ctx, rop, partitions)
	if err != nil {
		t.Fatal(err)
	}
	lost := events(rop)
	if lost >= lastPrimary {
		t.Fatalf("the replica has %d events, the primary had %d: nothing was lost, the test proves nothing", lost, lastPrimary)
	}
	t.Logf("the promoted replica has %d events, the primary had %d; offsets %v, primary's %v", lost, lastPrimary, replicaOffsets, primaryOffsets)
	e.checkSnapshot(rop, s, partitions)
	checkDeployment(t, e, rop, rules)

	for b := range 6 {
		e.produceEvents(s, codec, genEvents(uint64(400+b), 500, d, 40))
	}
	waitFor("caught up on the new primary", caughtUp)
	cancel()
	t.Logf("%d trainer runs", sv.runs)
	e.check(s.rebuild(map[int32]int64{0: 1 << 62, 1: 1 << 62, 2: 1 << 62, 3: 1 << 62, 4: 1 << 62, 5: 1 << 62}))
	checkDeployment(t, e, rop, rules)
}
