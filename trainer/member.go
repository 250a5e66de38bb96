package trainer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/topic"
)

// partition is the state of one owned partition.
type partition struct {
	guard    string                   // value of its offset field last read or written ("" = absent)
	written  int64                    // the offset in guard; -1 if none
	next     int64                    // next offset to consume; -1 if unknown (nothing stored or consumed)
	deltas   map[string]*linucb.Delta // per product: the unflushed events
	events   int64                    // unflushed valid events
	invalid  int64                    // unflushed dead letters
	resync   bool                     // fenced: seek to next before consuming again
	hwm      int64                    // high watermark in its last fetch; -1 if none yet
	logStart int64                    // log start offset in its last fetch
}

func newPartition(stored string) (*partition, error) {
	p := &partition{guard: stored, written: -1, next: -1, hwm: -1, deltas: map[string]*linucb.Delta{}}
	if stored != "" {
		v, err := store.ParseOffset(stored)
		if err != nil {
			return nil, err
		}
		p.written, p.next = v, v
	}
	return p, nil
}

// member is one consumer-group member. The poll loop and the group
// callbacks share its state under mu.
type member struct {
	cfg     Config
	log     *slog.Logger
	meta    store.Meta
	codec   *event.Codec
	view    event.View  // the record being folded; reused
	cl      *kgo.Client // consumer
	dlq     *deadLetters
	baseCtx context.Context

	mu          sync.Mutex
	parts       map[int32]*partition
	bases       map[string]store.StoredArm // stored state of arms, as last read or written
	dirty       int                        // number of (partition, product) deltas
	inflight    *flushing                  // the write in flight, if any
	lastFailure time.Time                  // of the last failed flush
	behind      bool                       // a backlog seen since the last flush that found none
	lagging     bool                       // some partition was behind after the last poll
	flushedAt   time.Time                  // when the poll loop last started a flush
	fatal       error
	total       struct{ events, invalid, flushes, conflicts int64 }
}

func newMember(ctx context.Context, cfg Config, meta store.Meta, log *slog.Logger) (*member, error) {
	var codec *event.Codec
	var err error
	if cfg.SchemaRegistry != "" {
		fetch, ferr := registryFetcher(cfg.SchemaRegistry)
		if ferr != nil {
			return nil, ferr
		}
		codec, err = event.NewRegistryCodec(meta.Dim, fetch)
	} else {
		codec, err = event.NewCodec(meta.Dim)
	}
	if err != nil {
		return nil, err
	}
	m := &member{cfg: cfg, log: log, meta: meta, codec: codec, baseCtx: context.WithoutCancel(ctx),
		parts: map[int32]*partition{}, bases: map[string]store.StoredArm{}}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.BlockRebalanceOnPoll(),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// The joiner writes feedback events in transactions: an aborted
		// one's events must not be folded.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AdjustFetchOffsetsFn(m.assigned),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.lost),
		kgo.WithLogger(topic.Logger(log)),
	}
	if m.cl, err = kgo.NewClient(append(opts, cfg.KafkaOpts...)...); err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	if m.dlq, err = newDeadLetters(m.baseCtx, cfg.Brokers, cfg.DLQTopic); err != nil {
		m.cl.Close()
		return nil, err
	}
	return m, nil
}
