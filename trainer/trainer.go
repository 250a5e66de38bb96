// Package trainer is the learning half of redbandit: a Kafka consumer-group
// member that folds feedback events into its products' LinUCB state and
// periodically writes the changed arms to Redis, together with the Kafka
// offsets they account for, in one atomic write.
//
// # Exactly-once effect
//
// Offsets are not committed to Kafka. For every partition p of the topic the
// model's root hash holds the field off:<topic>:<p> (store.OffsetField): the next
// offset to consume. A flush is a single store.Write.Apply carrying the
// changed arms (each checked against the version it was read at) and the new
// offset of every partition this member owns, each guarded on the value the
// member last read or wrote. So the model and the offsets move together or
// not at all, and a member that lost a partition without noticing (a stale
// member, paused past its session timeout) cannot overwrite the newer owner's
// state: its write fails with store.ErrConflict and writes nothing. The
// member then re-reads the stored offsets, drops the in-memory state of the
// partitions it was fenced out of, seeks them to the stored offsets and
// writes the rest again.
//
// On assignment a member reads the stored offsets of its new partitions and
// consumes from there (from the start of a partition without a stored
// offset). On revocation it flushes synchronously before giving the
// partitions up; on loss it drops their state. Arm state is read from Redis
// lazily, at the first flush that needs it, and cached between flushes.
//
// # Bad events
//
// An event that does not decode or validate (package event) is produced to
// the dead-letter topic with headers reason, error, source-topic,
// source-partition and source-offset, and skipped. Dead letters are
// acknowledged by Kafka before the flush that moves the offset past them, so
// none is lost; a crash between the two produces them again (the dead-letter
// topic is at-least-once).
package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/rueidis"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/topic"
)

// Defaults of Config.
const (
	DefaultTopic         = topic.DefaultFeedback // feedback-events
	DefaultGroup         = "redbandit-trainer"
	DefaultFlushInterval = 5 * time.Second
	DefaultMaxDirty      = 10000
	DefaultPartitions    = topic.DefaultPartitions // 6
	// DefaultDLQSuffix is appended to Topic to name the dead-letter topic
	// when Config.DLQTopic is empty: feedback-events.dlq by default.
	DefaultDLQSuffix = topic.DLQSuffix
	// DefaultFlushTimeout bounds one flush (the dead-letter acknowledgement
	// and the Redis write).
	DefaultFlushTimeout = 30 * time.Second
)

// maxWriteAttempts bounds the write attempts of one flush when writes
// conflict (fencing or a concurrent writer of the same arms).
const maxWriteAttempts = 5

// assignAttempts bounds the reads of the stored offsets on assignment.
const assignAttempts = 4

// Errors of this package, for errors.Is.
var (
	// ErrBadConfig reports an invalid Config.
	ErrBadConfig = errors.New("trainer: bad config")
	// ErrOffsetOutOfRange reports that a stored offset is no longer in its
	// partition (retention removed the events, or the topic was
	// recreated). Set Config.ResetOutOfRange to restart such a partition
	// from its first available offset instead.
	ErrOffsetOutOfRange = errors.New("trainer: stored offset out of range")
	// ErrDeadLetter reports that a dead letter could not be produced; the
	// trainer stops rather than move its offsets past the event.
	ErrDeadLetter = errors.New("trainer: dead-letter produce failed")
)

// Config configures a trainer.
type Config struct {
	// Brokers are the Kafka seed brokers (host:port). Required.
	Brokers []string
	// Topic is the feedback topic. Default DefaultTopic (feedback-events).
	Topic string
	// Group is the consumer group. Default DefaultGroup (redbandit-trainer).
	Group string
	// Partitions is the partition count used when Run creates a missing
	// Topic (and dead-letter topic). Default DefaultPartitions (6). An
	// existing topic is left as it is.
	Partitions int32
	// DLQTopic is the dead-letter topic. Default Topic + ".dlq".
	DLQTopic string
	// FlushInterval is the time between flushes. Default 5s. A member that
	// was behind also flushes once it has caught up with its partitions (a
	// catch-up flush), at most once per tenth of the interval.
	FlushInterval time.Duration
	// MaxDirty flushes early once this many products have unflushed
	// events. Default DefaultMaxDirty (10,000).
	MaxDirty int
	// Redis is the client of the model's Redis. Required; the caller
	// closes it.
	Redis rueidis.Client
	// Model is the model name M (keys rb:{M}...). Required. The model must
	// exist: its dimension is the events' dimension (`redbandit trainer
	// --bootstrap` creates it with training/bootstrap before Run).
	Model string
	// SchemaRegistry, if set, is the URL of a Confluent-compatible schema
	// registry: Avro records are then read with the writer schema
	// registered under their schema id, resolved against event.Schema.
	// If the registry cannot be reached the trainer stops (without
	// skipping the record); a restart resumes there. Default none: every
	// Avro record is read with event.Schema.
	SchemaRegistry string
	// ResetOutOfRange restarts a partition whose stored offset is out of
	// range from its first available offset (losing the events in
	// between) instead of stopping with ErrOffsetOutOfRange. Default off.
	ResetOutOfRange bool
	// Logger receives one line per flush, rebalances and warnings. Nil
	// discards them.
	Logger *slog.Logger
	// OnFlush, if set, is called after every successful flush that wrote
	// something, with the member's lock held: it must not block. Default
	// nil.
	OnFlush func(FlushStats)
	// OnStarted, if set, is called once the model has been read and the
	// topics exist, before the trainer joins its group: what runs next to
	// the trainer (the joiner) starts then, so a trainer that cannot start
	// reports its own error. Default nil.
	OnStarted func()
	// KafkaOpts are extra franz-go client options appended to the
	// trainer's own (e.g. session timeouts). Default none.
	KafkaOpts []kgo.Opt

	// beforeApply is a test hook called before each write attempt.
	beforeApply func(attempt int)
}

// FlushStats describes one flush.
type FlushStats struct {
	Products int             // arms written
	Events   int64           // valid events folded into them
	Invalid  int64           // events sent to the dead-letter topic
	Offsets  map[int32]int64 // next offset stored, per owned partition with a known position
	Attempts int             // write attempts (more than 1 after conflicts)
	Fenced   []int32         // partitions found owned by another writer, whose state was dropped
	Duration time.Duration
}

// Validate checks cfg and fills in its defaults; Run calls it. A caller
// that does work of its own before Run (the command's bootstrap) calls it
// first, so that a bad config fails before that work.
func (cfg *Config) Validate() error {
	var problems []string
	if len(cfg.Brokers) == 0 {
		problems = append(problems, "no brokers")
	}
	if cfg.Redis == nil {
		problems = append(problems, "no redis client")
	}
	if cfg.Model == "" {
		problems = append(problems, "empty model name")
	}
	if cfg.FlushInterval < 0 || cfg.MaxDirty < 0 || cfg.Partitions < 0 {
		problems = append(problems, "negative flush interval, max dirty or partitions")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrBadConfig, strings.Join(problems, ", "))
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = DefaultPartitions
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = cfg.Topic + DefaultDLQSuffix
	}
	if cfg.DLQTopic == cfg.Topic {
		return fmt.Errorf("%w: the dead-letter topic is the input topic %s", ErrBadConfig, cfg.Topic)
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.MaxDirty == 0 {
		cfg.MaxDirty = DefaultMaxDirty
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run runs one trainer until ctx is cancelled or a fatal error: it creates
// the topics if missing, joins the group and consumes. On cancellation it flushes, leaves the group and
// returns nil (also when cancelled while starting).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	err := run(ctx, cfg)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func run(ctx context.Context, cfg Config) error {
	log := cfg.Logger.With("model", cfg.Model, "topic", cfg.Topic, "group", cfg.Group)
	meta, err := store.ReadMeta(ctx, cfg.Redis, cfg.Model)
	if err != nil {
		return fmt.Errorf("trainer: %w (create the model with `redbandit bootstrap` or --bootstrap)", err)
	}
	if err := topic.Ensure(ctx, cfg.Brokers, cfg.Partitions, cfg.Topic, cfg.DLQTopic); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	if cfg.OnStarted != nil {
		cfg.OnStarted()
	}
	m, err := newMember(ctx, cfg, meta, log)
	if err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	return m.run(ctx)
}
