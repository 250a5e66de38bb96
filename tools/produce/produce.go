// Package produce publishes a feedback log (a CSV file in the layout of
// package csvlog) to the feedback topic, one event per row, keyed by product
// id so that all of a product's events land in one partition and are folded
// by one trainer. Logs can be replayed this way and tests can feed the
// trainer.
package produce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/csvlog"
	"github.com/redbandit/redbandit/training/event"
	"github.com/redbandit/redbandit/training/topic"
)

// Encodings of Config.Format.
const (
	FormatAvro = "avro"
	FormatJSON = "json"
)

// ErrBadConfig reports an invalid Config.
var ErrBadConfig = errors.New("produce: bad config")

// Config configures a run.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic is the topic to publish to. Default topic.DefaultFeedback.
	Topic string
	// Partitions is the partition count used if the topic must be
	// created. Default topic.DefaultPartitions (6).
	Partitions int32
	// Format is FormatAvro (the default; Confluent wire format, rewards
	// must be 0 or 1) or FormatJSON.
	Format string
	// SchemaID is written in the Avro wire header. Default
	// event.DefaultSchemaID (1).
	SchemaID uint32
	// Rate caps the events produced per second; 0 (the default) means as
	// fast as possible.
	Rate float64
	// SkipBad skips malformed CSV rows (counting them) instead of stopping
	// at the first one.
	SkipBad bool
	// Now stamps the events' timestamp; nil means time.Now.
	Now func() time.Time
	// Logger receives progress messages. Nil discards them.
	Logger *slog.Logger
}

// Result reports a run.
type Result struct {
	Produced int64 // events acknowledged by Kafka
	Skipped  int64 // malformed rows skipped (SkipBad)
}

func (cfg *Config) validate() error {
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("%w: no brokers", ErrBadConfig)
	}
	if cfg.Topic == "" {
		cfg.Topic = topic.DefaultFeedback
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = topic.DefaultPartitions
	}
	switch cfg.Format {
	case "":
		cfg.Format = FormatAvro
	case FormatAvro, FormatJSON:
	default:
		return fmt.Errorf("%w: format %q, want %s or %s", ErrBadConfig, cfg.Format, FormatAvro, FormatJSON)
	}
	if cfg.SchemaID == 0 {
		cfg.SchemaID = event.DefaultSchemaID
	}
	if cfg.Rate < 0 {
		return fmt.Errorf("%w: negative rate %v", ErrBadConfig, cfg.Rate)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run publishes the CSV log at path; see RunReader.
func Run(ctx context.Context, path string, cfg Config) (Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	defer f.Close()
	return RunReader(ctx, f, cfg)
}

// RunReader publishes the CSV log read from r, creating the topic if it is
// missing, and returns once every event is acknowledged. It stops at the
// first malformed row (unless cfg.SkipBad), at a reward Avro cannot carry
// (a fraction: use FormatJSON), or at a produce error; events produced
// before the error stay in the topic.
func RunReader(ctx context.Context, r io.Reader, cfg Config) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	lr, err := csvlog.NewReader(r)
	if err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	codec, err := event.NewCodec(len(lr.Features()))
	if err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	if err := topic.Ensure(ctx, cfg.Brokers, cfg.Partitions, cfg.Topic); err != nil {
		return Result{}, fmt.Errorf("produce: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.Topic))
	if err != nil {
		return Result{}, fmt.Errorf("produce: kafka client: %w", err)
	}
	defer cl.Close()

	var (
		res     Result
		mu      sync.Mutex
		prodErr error
		acked   int64
	)
	failed := func() error { mu.Lock(); defer mu.Unlock(); return prodErr }
	start := time.Now()
	var sent int64
	for {
		if err := failed(); err != nil {
			break
		}
		ev, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, csvlog.ErrBadRow) && cfg.SkipBad {
				res.Skipped++
				continue
			}
			_ = cl.Flush(ctx)
			return withAcked(res, &mu, &acked), fmt.Errorf("produce: %w", err)
		}
		e := event.Event{EventID: ev.EventID, ProductID: ev.ProductID, Reward: ev.Reward,
			ContextVector: ev.Context, Timestamp: cfg.Now().UnixMilli()}
		var value []byte
		if cfg.Format == FormatJSON {
			value, err = event.AppendJSON(nil, e)
		} else {
			value, err = codec.AppendAvro(nil, cfg.SchemaID, e)
		}
		if err != nil {
			_ = cl.Flush(ctx)
			return withAcked(res, &mu, &acked), fmt.Errorf("produce: line %d: %w", ev.Line, err)
		}
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(sent) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if err := ctx.Err(); err != nil {
			_ = cl.Flush(context.WithoutCancel(ctx))
			return withAcked(res, &mu, &acked), fmt.Errorf("produce: %w", err)
		}
		sent++
		cl.Produce(ctx, &kgo.Record{Key: []byte(ev.ProductID), Value: value}, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				prodErr = errors.Join(prodErr, err)
				return
			}
			acked++
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return withAcked(res, &mu, &acked), fmt.Errorf("produce: flush: %w", err)
	}
	res = withAcked(res, &mu, &acked)
	if err := failed(); err != nil {
		return res, fmt.Errorf("produce: %w", err)
	}
	cfg.Logger.Info("produce: done", "topic", cfg.Topic, "events", res.Produced, "skipped", res.Skipped,
		"format", cfg.Format, "duration", time.Since(start))
	return res, nil
}

func withAcked(res Result, mu *sync.Mutex, acked *int64) Result {
	mu.Lock()
	defer mu.Unlock()
	res.Produced = *acked
	return res
}
