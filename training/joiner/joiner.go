// Package joiner joins the decision log (package training/decision) into
// the feedback events the trainer folds (package training/event): for
// every decision, the products a client rewarded by event id, each with its
// reward, and, when the decision's reward wait ends, every other counted
// product of its slate with reward 0.
//
// # Time
//
// A partition's time is the largest timestamp of its records so far (its
// stream time), never the wall clock, so the join is a function of the log
// alone: a decision's wait ends at the first record of its partition
// stamped at or after the decision's timestamp plus RewardWait. A
// partition that stays idle would hold its decisions forever, so the
// joiner appends a tick record (stamped with the wall clock) to a partition
// that has a timer due and has had no record for TickInterval.
//
// A reward is matched if its decision is in the partition's state: the
// decision's wait has not ended (else the reward is late), the product is
// in the slate (else not-in-slate), and the product was not rewarded
// before (else duplicate). A reward that comes before its decision (the
// sidecar logs decisions asynchronously) waits for it up to RewardWait;
// then it is unknown. A decision is remembered for late rewards one more
// RewardWait after its wait ended; a reward after that is unknown too.
// Dead letters go to DLQTopic with the trainer's headers (reason, error,
// source-topic, source-partition, source-offset).
//
// # Exactly once
//
// One transaction per poll: the feedback events and dead letters of the
// polled records, and the consumer group's offset commit, which carries
// the partition's checkpoint. The committed offset is the earliest record
// whose state is still needed (Start), and the commit's metadata records
// the offset through which output was produced (Next) and the stream time
// before Start (Clock). After a crash, or on a new owner, the partition is
// read again from Start with Clock: records before Next only rebuild the
// state, records from Next produce output. The result is exactly the
// output of a run without the crash. An aborted transaction (a rebalance,
// a failed commit) resets every partition to its last committed
// checkpoint. Consumers of FeedbackTopic must read committed records only
// (the trainer does). Emitted events have deterministic ids
// (decision id/product id).
package joiner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/topic"
)

// Impressions settings: which shown products count when a decision's wait
// ends.
const (
	ImpressionsAll   = "all"   // every product of the slate not rewarded
	ImpressionsAbove = "above" // only those above the deepest positive reward (all without one)
)

// Defaults of Config.
const (
	DefaultGroup        = "redbandit-joiner"
	DefaultRewardWait   = 10 * time.Minute
	DefaultTickInterval = time.Second
	// TransactionTimeout is the broker's limit on one transaction of the
	// joiner (one poll's output); it bounds how long the open transaction
	// of a crashed joiner holds up committed readers.
	TransactionTimeout = 10 * time.Second
)

// ErrBadConfig reports an invalid Config.
var ErrBadConfig = errors.New("joiner: bad config")

// Config configures a joiner.
type Config struct {
	Brokers []string // required
	// DecisionsTopic is the decision log; default "decisions".
	DecisionsTopic string
	// FeedbackTopic receives the feedback events; default feedback-events.
	FeedbackTopic string
	// DLQTopic receives late, unknown and duplicate rewards; default
	// FeedbackTopic + ".dlq" (the trainer's).
	DLQTopic string
	// Group is the consumer group; default redbandit-joiner.
	Group string
	// TransactionalID must be unique per running joiner. Set it to a name
	// that is also the same across the joiner's restarts: a restart then
	// aborts its predecessor's open transaction at once, and, as it is
	// also the joiner's static group membership (instance id), takes its
	// partitions back without waiting for a rebalance. Default Group +
	// "-" + the host name + "-" + the process id (unique, but a restart
	// leaves an open transaction to time out: TransactionTimeout, during
	// which the partitions it wrote stall for committed readers).
	TransactionalID string
	// Partitions is the partition count of topics the joiner creates.
	Partitions int32
	// RewardWait is how long (in record time) a decision waits for
	// rewards; default 10m.
	RewardWait time.Duration
	// Impressions is ImpressionsAll (default) or ImpressionsAbove.
	Impressions string
	// Model, if set, joins only the decisions and rewards of this model.
	Model string
	// TickInterval is the idle time after which a partition with a due
	// timer gets a tick; default 1s.
	TickInterval time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
	// KafkaOpts are extra franz-go options of the transactional client.
	KafkaOpts []kgo.Opt

	instanceID string // static membership: set when TransactionalID is given
}

// Validate checks cfg and fills in its defaults.
func (cfg *Config) Validate() error {
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("%w: no brokers", ErrBadConfig)
	}
	if cfg.DecisionsTopic == "" {
		cfg.DecisionsTopic = decision.DefaultTopic
	}
	if cfg.FeedbackTopic == "" {
		cfg.FeedbackTopic = topic.DefaultFeedback
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.FeedbackTopic + topic.DLQSuffix
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.TransactionalID != "" {
		cfg.instanceID = cfg.TransactionalID
	} else {
		host, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("%w: no transactional id and no host name: %v", ErrBadConfig, err)
		}
		cfg.TransactionalID = cfg.Group + "-" + host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = topic.DefaultPartitions
	}
	if cfg.RewardWait == 0 {
		cfg.RewardWait = DefaultRewardWait
	}
	if cfg.RewardWait < time.Millisecond {
		return fmt.Errorf("%w: reward wait %v under 1ms", ErrBadConfig, cfg.RewardWait)
	}
	switch cfg.Impressions {
	case "":
		cfg.Impressions = ImpressionsAll
	case ImpressionsAll, ImpressionsAbove:
	default:
		return fmt.Errorf("%w: impressions %q is not all or above", ErrBadConfig, cfg.Impressions)
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	t := map[string]bool{cfg.DecisionsTopic: true}
	for _, x := range []string{cfg.FeedbackTopic, cfg.DLQTopic} {
		if t[x] {
			return fmt.Errorf("%w: topic %s used twice", ErrBadConfig, x)
		}
		t[x] = true
	}
	return nil
}

// joiner is one running joiner.
type joiner struct {
	cfg   Config
	log   *slog.Logger
	codec *decision.Codec
	evc   *event.Codec
	sess  *kgo.GroupTransactSession
	ticks *kgo.Client  // manual partitioning, outside transactions
	admin *kadm.Client // reads checkpoints; made before sess, whose callbacks use it

	mu       sync.Mutex
	parts    map[int32]*partState
	lastSeen map[int32]time.Time // wall time of the partition's last record or tick
}

// Run joins until ctx is cancelled (then it returns nil) or a fatal error.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	err := run(ctx, cfg)
	if ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err()) || errors.Is(err, kgo.ErrClientClosed)) {
		return nil
	}
	return err
}

func run(ctx context.Context, cfg Config) error {
	if err := topic.Ensure(ctx, cfg.Brokers, cfg.Partitions, cfg.DecisionsTopic, cfg.FeedbackTopic, cfg.DLQTopic); err != nil {
		return fmt.Errorf("joiner: %w", err)
	}
	codec, err := decision.NewCodec()
	if err != nil {
		return err
	}
	evc, err := event.NewCodec(1) // encodes only: the dimension is not checked
	if err != nil {
		return err
	}
	j := &joiner{cfg: cfg, log: cfg.Logger.With("topic", cfg.DecisionsTopic, "group", cfg.Group), codec: codec, evc: evc,
		parts: map[int32]*partState{}, lastSeen: map[int32]time.Time{}}
	// Plain clients first: the session's group callbacks may run before
	// NewGroupTransactSession returns.
	if j.ticks, err = kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner())); err != nil {
		return fmt.Errorf("joiner: kafka: %w", err)
	}
	defer j.ticks.Close()
	j.admin = kadm.NewClient(j.ticks)
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.TransactionalID(cfg.TransactionalID),
		kgo.TransactionTimeout(TransactionTimeout),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.DecisionsTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(j.assigned),
		kgo.OnPartitionsRevoked(j.dropped),
		kgo.OnPartitionsLost(j.dropped),
		kgo.WithLogger(topic.Logger(j.log)),
	}
	if cfg.instanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.instanceID))
	}
	if j.sess, err = kgo.NewGroupTransactSession(append(opts, cfg.KafkaOpts...)...); err != nil {
		return fmt.Errorf("joiner: kafka: %w", err)
	}
	defer j.sess.Close()
	j.log.Info("joiner: started", "feedback_topic", cfg.FeedbackTopic, "reward_wait", cfg.RewardWait,
		"impressions", cfg.Impressions, "transactional_id", cfg.TransactionalID)
	return j.loop(ctx)
}

// assigned reads the checkpoints of newly assigned partitions (the
// metadata of their committed offsets) and starts their state there.
func (j *joiner) assigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	resp, err := j.admin.FetchOffsets(ctx, j.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("joiner: fetch checkpoints: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for p := range offsets[j.cfg.DecisionsTopic] {
		cp := checkpoint{}
		if o, ok := resp.Lookup(j.cfg.DecisionsTopic, p); ok && o.Err == nil && o.At >= 0 {
			if err := json.Unmarshal([]byte(o.Metadata), &cp); err != nil || cp.Start != o.At {
				return nil, fmt.Errorf("joiner: partition %d: committed offset %d without a checkpoint (metadata %q)", p, o.At, o.Metadata)
			}
		}
		j.parts[p] = newPartState(&j.cfg, j.codec, cp)
		j.lastSeen[p] = time.Now()
		offsets[j.cfg.DecisionsTopic][p] = kgo.NewOffset().At(cp.Start)
		j.log.Info("joiner: partition assigned", "partition", p, "start", cp.Start, "next", cp.Next)
	}
	return offsets, nil
}

func (j *joiner) dropped(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, p := range lost[j.cfg.DecisionsTopic] {
		delete(j.parts, p)
		delete(j.lastSeen, p)
	}
}

func (j *joiner) loop(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, j.cfg.TickInterval)
		fetches := j.sess.PollFetches(pctx)
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		var fatal error
		fetches.EachError(func(t string, p int32, err error) {
			switch {
			case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			case errors.Is(err, kgo.ErrClientClosed):
				fatal = err
			default:
				j.log.Warn("joiner: fetch", "topic", t, "partition", p, "err", err)
			}
		})
		if fatal != nil {
			return fatal
		}
		if fetches.NumRecords() > 0 {
			if err := j.transact(ctx, fetches); err != nil {
				return err
			}
		}
		// Every round: busy partitions must not starve an idle one.
		j.tick(ctx)
		if fetches.NumRecords() == 0 {
			continue
		}
		// Back to back, Kafka 4.1 answered most transactions' offset
		// commits with an error franz-go aborts on (the broker still
		// completing the last one): space them out. What arrives
		// meanwhile goes into the next transaction.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(txnSpacing):
		}
	}
}

// txnSpacing is the least time between the joiner's transactions.
const txnSpacing = 100 * time.Millisecond

// transact processes the polled records in one transaction.
func (j *joiner) transact(ctx context.Context, fetches kgo.Fetches) error {
	if err := j.sess.Begin(); err != nil {
		return fmt.Errorf("joiner: begin transaction: %w", err)
	}
	var (
		produceMu  sync.Mutex
		produceErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			produceMu.Lock()
			produceErr = errors.Join(produceErr, err)
			produceMu.Unlock()
		}
	}
	cps := map[int32]checkpoint{}
	var encErr error
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		j.mu.Lock()
		st := j.parts[fp.Partition]
		j.lastSeen[fp.Partition] = time.Now()
		j.mu.Unlock()
		if st == nil {
			return // revoked meanwhile: the transaction aborts
		}
		var outs []output
		for _, r := range fp.Records {
			outs = st.process(r, outs[:0])
			for _, o := range outs {
				rec, err := j.record(o, r)
				if err != nil {
					encErr = errors.Join(encErr, err)
					continue
				}
				j.sess.Produce(ctx, rec, promise)
			}
		}
		cps[fp.Partition] = st.checkpoint()
	})
	if encErr != nil {
		_, _ = j.sess.End(ctx, kgo.TryAbort)
		return fmt.Errorf("joiner: %w", encErr)
	}
	commitCtx := kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		j.setCheckpoints(req, cps)
		return nil
	})
	committed, err := j.sess.End(commitCtx, kgo.TryCommit)
	if err != nil {
		return fmt.Errorf("joiner: end transaction: %w", err)
	}
	produceMu.Lock()
	perr := produceErr
	produceMu.Unlock()
	if perr != nil && committed {
		// Cannot happen: a transaction with a failed record aborts.
		return fmt.Errorf("joiner: produce: %w", perr)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if committed {
		for p, cp := range cps {
			if st := j.parts[p]; st != nil {
				st.cp = cp
			}
		}
		return nil
	}
	// Aborted: the client is back at the committed offsets (each owned
	// partition's checkpoint Start); so is the state.
	j.log.Info("joiner: transaction aborted; replaying from the checkpoints", "produce_err", perr)
	seek := map[int32]kgo.EpochOffset{}
	for p, st := range j.parts {
		j.parts[p] = newPartState(&j.cfg, j.codec, st.cp)
		seek[p] = kgo.EpochOffset{Epoch: -1, Offset: st.cp.Start}
	}
	// The session reset the partitions with a committed offset; one never
	// committed must go back to its start too.
	j.sess.Client().SetOffsets(map[string]map[int32]kgo.EpochOffset{j.cfg.DecisionsTopic: seek})
	return nil
}

// setCheckpoints makes the transaction's offset commit carry each processed
// partition's checkpoint: offset Start, the checkpoint as metadata. The
// other partitions keep their last checkpoint.
func (j *joiner) setCheckpoints(req *kmsg.TxnOffsetCommitRequest, cps map[int32]checkpoint) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for ti := range req.Topics {
		t := &req.Topics[ti]
		if t.Topic != j.cfg.DecisionsTopic {
			continue
		}
		kept := t.Partitions[:0]
		for _, p := range t.Partitions {
			cp, ok := cps[p.Partition]
			if !ok {
				st := j.parts[p.Partition]
				if st == nil {
					continue // not ours any more: the transaction aborts anyway
				}
				cp = st.cp
			}
			meta, _ := json.Marshal(cp)
			s := string(meta)
			p.Offset, p.LeaderEpoch, p.Metadata = cp.Start, -1, &s
			kept = append(kept, p)
		}
		t.Partitions = kept
	}
}

// record turns an output of source r into the record to produce.
func (j *joiner) record(o output, r *kgo.Record) (*kgo.Record, error) {
	if o.ev != nil {
		v, err := j.evc.AppendRecord(nil, *o.ev)
		if err != nil {
			return nil, fmt.Errorf("encode feedback event %s: %w", o.ev.EventID, err)
		}
		return &kgo.Record{Topic: j.cfg.FeedbackTopic, Key: []byte(o.ev.ProductID), Value: v}, nil
	}
	d := o.dead
	return &kgo.Record{Topic: j.cfg.DLQTopic, Key: d.Key, Value: d.Value, Headers: []kgo.RecordHeader{
		{Key: "reason", Value: []byte(o.reason)},
		{Key: "error", Value: []byte(o.detail)},
		{Key: "source-topic", Value: []byte(d.Topic)},
		{Key: "source-partition", Value: []byte(strconv.Itoa(int(d.Partition)))},
		{Key: "source-offset", Value: []byte(strconv.FormatInt(d.Offset, 10))},
	}}, nil
}

// tick appends a tick to each owned partition that has a timer due by the
// wall clock and has been idle for TickInterval, so that its time moves.
func (j *joiner) tick(ctx context.Context) {
	now := time.Now()
	var recs []*kgo.Record
	j.mu.Lock()
	for p, st := range j.parts {
		if len(st.timers) == 0 || st.timers[0].at > now.UnixMilli() || now.Sub(j.lastSeen[p]) < j.cfg.TickInterval {
			continue
		}
		j.lastSeen[p] = now
		recs = append(recs, &kgo.Record{Topic: j.cfg.DecisionsTopic, Partition: p, Timestamp: now,
			Headers: []kgo.RecordHeader{{Key: decision.TypeHeader, Value: []byte(decision.TypeTick)}}})
	}
	j.mu.Unlock()
	for _, r := range recs {
		j.ticks.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, kerr.UnknownTopicOrPartition) {
				j.log.Warn("joiner: tick", "partition", r.Partition, "err", err)
			}
		})
	}
}
