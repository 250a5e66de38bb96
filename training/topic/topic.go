// Package topic names and creates the Kafka topics redbandit uses: the
// feedback topic the trainer consumes and its dead-letter topic, and passes
// the Kafka clients' log lines to slog.
package topic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults.
const (
	// DefaultFeedback is the feedback topic.
	DefaultFeedback = "feedback-events"
	// DLQSuffix names a feedback topic's dead-letter topic:
	// feedback-events.dlq.
	DLQSuffix = ".dlq"
	// DefaultPartitions is the partition count of topics created here.
	DefaultPartitions = 6
)

// Ensure creates the topics that do not exist yet, with the given number of
// partitions and the brokers' default replication factor. Existing topics
// are left as they are (their partition count is not checked).
func Ensure(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range res.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// Logger passes a franz-go client's log lines to log, prefixed "kafka: ";
// franz-go's info level is chatty, so it is logged only when log is at
// debug.
func Logger(log *slog.Logger) kgo.Logger { return kgoLogger{log} }

type kgoLogger struct{ log *slog.Logger }

func (l kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case l.log.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelInfo
	case l.log.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	default:
		return kgo.LogLevelError
	}
}

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelDebug
	switch level {
	case kgo.LogLevelError:
		lv = slog.LevelError
	case kgo.LogLevelWarn:
		lv = slog.LevelWarn
	}
	l.log.Log(context.Background(), lv, "kafka: "+msg, keyvals...)
}
