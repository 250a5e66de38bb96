package trainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/internal/redistest"
	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/bootstrap"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/topic"
)

const (
	testTopic = "feedback-events"
	testModel = "m"
	// relTol is the tolerance on A and b: |got-want| <= relTol·max(1, max|want|)
	// over the entries of the matrix (or vector). Sums folded in another
	// association order (split across flushes) differ by rounding only.
	relTol = 1e-9
)

// env is one test's Kafka (in process) and Redis (a real server).
type env struct {
	t       *testing.T
	topic   string // testTopic on kfake; a fresh name on a real Kafka
	real    bool   // a real Kafka (REDBANDIT_TEST_KAFKA)
	brokers []string
	redis   rueidis.Client
	log     *slog.Logger
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	e, _ := newEnvURL(t, partitions)
	return e
}

// newEnvURL is newEnv that also returns the Redis URL. With
// REDBANDIT_TEST_KAFKA=host:port (e.g. from `make kafka-up`) the test uses
// that Kafka instead, with a topic of its own.
func newEnvURL(t *testing.T, partitions int32) (*env, string) {
	t.Helper()
	e, srv := newEnvRedis(t, partitions)
	return e, srv.URL()
}

// newEnvRedis is newEnv with redis-server started with extra arguments; it
// returns the server so that a test can kill and restart it.
func newEnvRedis(t *testing.T, partitions int32, redisArgs ...string) (*env, *redistest.Server) {
	t.Helper()
	e := &env{t: t, topic: testTopic}
	if addr := os.Getenv(realKafkaEnv); addr != "" {
		e.real, e.brokers = true, strings.Split(addr, ",")
		e.topic = fmt.Sprintf("%s-%s-%d", testTopic, strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
		if err := topic.Ensure(context.Background(), e.brokers, partitions, e.topic); err != nil {
			t.Fatal(err)
		}
	} else {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, testTopic), kfake.GroupMinSessionTimeout(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cluster.Close)
		e.brokers = cluster.ListenAddrs()
	}
	srv := redistest.Start(t, redisArgs...)
	level := slog.LevelWarn
	if os.Getenv("TRAINER_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	e.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	e.redis = srv.Client()
	return e, srv
}

// realKafkaEnv names the environment variable that points the tests at a
// real Kafka.
const realKafkaEnv = "REDBANDIT_TEST_KAFKA"

// sessionTimeout is the group session timeout of test trainers: short on
// kfake, the broker's minimum (6s by default) on a real Kafka.
func (e *env) sessionTimeout() time.Duration {
	if e.real {
		return 6 * time.Second
	}
	return 3 * time.Second
}

func (e *env) config() Config {
	return Config{
		Brokers: e.brokers, Topic: e.topic, Group: e.topic, Model: testModel, Redis: e.redis,
		FlushInterval: 100 * time.Millisecond, MaxDirty: 20, Logger: e.log,
		KafkaOpts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.SessionTimeout(e.sessionTimeout())},
	}
}

// ref is the offline reference state of one product: A = λI + Σxxᵀ,
// b = Σrx, n, accumulated with plain loops independent of package linucb.
type ref struct {
	a, b []float64
	n    int64
	r    float64 // Σ r
}

type refModel struct {
	d       int
	arms    map[string]*ref
	events  int64
	rewards float64
	// halfLife > 0: before each event, the product's A − λI and b fade by
	// 2^(−1/halfLife) (docs/FORMAT.md, forgetting).
	halfLife float64
}

func newRefModel(d int) *refModel { return &refModel{d: d, arms: map[string]*ref{}} }

func (m *refModel) add(product string, x []float64, r float64) {
	d := m.d
	s := m.arms[product]
	if s == nil {
		s = &ref{a: make([]float64, d*d), b: make([]float64, d)}
		for i := 0; i < d; i++ {
			s.a[i*d+i] = 1 // λ = 1
		}
		m.arms[product] = s
	}
	if m.halfLife > 0 {
		g := math.Pow(0.5, 1/m.halfLife)
		for i := 0; i < d; i++ {
			for j := 0; j < d; j++ {
				s.a[i*d+j] *= g
			}
			s.a[i*d+i] += 1 - g // λ = 1 stays
			s.b[i] *= g
		}
	}
	for i := 0; i < d; i++ {
		for j := 0; j < d; j++ {
			s.a[i*d+j] += x[i] * x[j]
		}
		s.b[i] += r * x[i]
	}
	s.n++
	s.r += r
	m.events++
	m.rewards += r
}

// genEvents returns n seeded events over products p0..p{products-1}, with
// about a third of the context entries zero and 0/1 rewards.
func genEvents(seed uint64, n, d, products int) []event.Event {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]event.Event, n)
	for i := range out {
		x := make([]float64, d)
		for j := range x {
			if rng.IntN(3) > 0 {
				x[j] = math.Round(rng.NormFloat64()*1e6) / 1e6
			}
		}
		out[i] = event.Event{EventID: fmt.Sprintf("e%d-%d", seed, i), ProductID: fmt.Sprintf("p%d", rng.IntN(products)),
			Reward: float64(rng.IntN(2)), ContextVector: x, Timestamp: int64(1764000000000 + i)}
	}
	return out
}

// csvOf writes events in the csvlog layout.
func csvOf(events []event.Event, d int) []byte {
	var buf bytes.Buffer
	buf.WriteString("event_id")
	for j := 0; j < d; j++ {
		fmt.Fprintf(&buf, ",f%d", j)
	}
	buf.WriteString(",product_id,response\n")
	for _, ev := range events {
		buf.WriteString(ev.EventID)
		for _, v := range ev.ContextVector {
			buf.WriteString("," + strconv.FormatFloat(v, 'g', -1, 64))
		}
		fmt.Fprintf(&buf, ",%s,%s\n", ev.ProductID, strconv.FormatFloat(ev.Reward, 'g', -1, 64))
	}
	return buf.Bytes()
}

// createModel creates model testModel of dimension d by bootstrapping the
// given history (which may be empty), and folds it into ref.
func (e *env) createModel(d int, history []event.Event, ref *refModel) {
	e.t.Helper()
	_, err := bootstrap.RunReader(context.Background(), e.redis, bytes.NewReader(csvOf(history, d)), "history", bootstrap.Config{Model: testModel, HalfLife: ref.halfLife})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range history {
		ref.add(ev.ProductID, ev.ContextVector, ev.Reward)
	}
}

// newCodec returns the Avro/JSON codec of dimension d.
func newCodec(t testing.TB, d int) *event.Codec {
	t.Helper()
	c, err := event.NewCodec(d)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// produce writes records (key, value) to the topic and waits for acks.
func (e *env) produce(recs ...*kgo.Record) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.DefaultProduceTopic(e.topic))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
}

func avroRecord(t testing.TB, c *event.Codec, ev event.Event) *kgo.Record {
	v, err := c.AppendAvro(nil, event.DefaultSchemaID, ev)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Key: []byte(ev.ProductID), Value: v}
}

// caughtUp reports whether the stored offset of every partition of the
// topic equals its end offset.
func (e *env) caughtUp(ctx context.Context) (bool, string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		return false, "", err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, e.topic)
	if err != nil {
		return false, "", err
	}
	var lag []string
	var problems error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			problems = errors.Join(problems, o.Err)
			return
		}
		v, err := e.redis.Do(ctx, e.redis.B().Hget().Key(store.RootKey(testModel)).Field(store.OffsetField(e.topic, o.Partition)).Build()).ToString()
		if rueidis.IsRedisNil(err) {
			v, err = "0", nil
		}
		if err != nil {
			problems = errors.Join(problems, err)
			return
		}
		if v != strconv.FormatInt(o.Offset, 10) {
			lag = append(lag, fmt.Sprintf("p%d stored %s end %d", o.Partition, v, o.Offset))
		}
	})
	return len(lag) == 0 && problems == nil, strings.Join(lag, "; "), problems
}

func (e *env) waitCaughtUp(timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, lag, err := e.caughtUp(context.Background())
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not caught up after %v: %s %v", timeout, lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check compares every product's stored A, b, n and the model's event count
// with the reference.
func (e *env) check(want *refModel) {
	e.t.Helper()
	ctx := context.Background()
	meta, err := store.ReadMeta(ctx, e.redis, testModel)
	if err != nil {
		e.t.Fatal(err)
	}
	if meta.Events != want.events || meta.Arms != len(want.arms) || !near([]float64{meta.Rewards}, []float64{want.rewards}) {
		e.t.Errorf("model has %d events, %v rewards and %d arms, want %d, %v and %d", meta.Events, meta.Rewards, meta.Arms, want.events, want.rewards, len(want.arms))
	}
	ids := make([]string, 0, len(want.arms))
	for id := range want.arms {
		ids = append(ids, id)
	}
	stored, err := store.ReadArms(ctx, e.redis, testModel, want.d, 1, ids)
	if err != nil {
		e.t.Fatal(err)
	}
	bad := 0
	for _, s := range stored {
		w := want.arms[s.ID]
		if s.Version == 0 || s.Arm.N() != w.n || !near([]float64{s.Arm.Rewards()}, []float64{w.r}) || !near(s.Arm.A(), w.a) || !near(s.Arm.B(), w.b) {
			bad++
			if bad <= 3 {
				e.t.Errorf("product %s: version %d n %d (want %d) rewards %v (want %v)\n A %v\nwant %v\n b %v\nwant %v", s.ID, s.Version, s.Arm.N(), w.n, s.Arm.Rewards(), w.r, s.Arm.A(), w.a, s.Arm.B(), w.b)
			}
		}
	}
	if bad > 0 {
		e.t.Errorf("%d of %d products differ from the offline computation", bad, len(ids))
	}
}

func near(got, want []float64) bool {
	scale := 1.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(v))
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > relTol*scale {
			return false
		}
	}
	return len(got) == len(want)
}

// runner runs trainers in goroutines the test owns.
type runner struct {
	t  *testing.T
	wg sync.WaitGroup
}

// start runs Run(ctx, cfg) until stop is called; stop cancels and returns
// Run's error.
func (r *runner) start(cfg Config) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		done <- Run(ctx, cfg)
	}()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("trainer did not stop within 60s")
			}
		})
		return err
	}
	r.t.Cleanup(func() { _ = stop() })
	return stop
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// consumeAll reads n records of topic from the start, directly (no group).
func consumeAll(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		out = append(out, f.Records()...)
	}
	// Anything beyond n shows up within a short wait.
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	out = append(out, cl.PollFetches(sctx).Records()...)
	return out
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, kv := range r.Headers {
		h[kv.Key] = string(kv.Value)
	}
	return h
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

func restoreSolve(d int, a, b []float64, n int64, r float64) (store.ArmWrite, error) {
	arm, err := linucb.Restore(d, a, b, n, r)
	if err != nil {
		return store.ArmWrite{}, err
	}
	p, err := arm.Solve()
	return store.ArmWrite{Arm: arm, Params: p}, err
}

func armVersions(t *testing.T, e *env, ids []string) []int64 {
	t.Helper()
	stored, err := store.ReadArms(context.Background(), e.redis, testModel, len(e.mustMeta().Features), 1, ids)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(stored))
	for i, s := range stored {
		out[i] = s.Version
	}
	return out
}

func (e *env) mustMeta() store.Meta {
	m, err := store.ReadMeta(context.Background(), e.redis, testModel)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (e *env) hgetall(key string) map[string]string {
	e.t.Helper()
	m, err := e.redis.Do(context.Background(), e.redis.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}
