// Package topic names and creates the Kafka topics redbandit uses: the
// feedback topic the trainer consumes and its dead-letter topic.
package topic

import (
	"context"
	"errors"
	"fmt"

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
