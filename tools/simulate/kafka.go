package simulate

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/event"
)

// Kafka sends each visit's feedback events (Feedback.Events) to a topic, Avro-encoded in the Confluent
// wire format (JSON for fractional rewards) and keyed by product id, as the
// trainer reads them. Sends are asynchronous; the first failure is returned
// by a later Send or by Flush.
type Kafka struct {
	Client *kgo.Client
	Topic  string
	Codec  *event.Codec

	mu  sync.Mutex
	err error
}

// Send implements Sink: one event per impression.
func (k *Kafka) Send(ctx context.Context, fb Feedback) error {
	for _, ev := range fb.Events() {
		if err := k.send(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

func (k *Kafka) send(ctx context.Context, ev event.Event) error {
	k.mu.Lock()
	err := k.err
	k.mu.Unlock()
	if err != nil {
		return err
	}
	value, err := k.Codec.AppendRecord(nil, ev)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	k.Client.Produce(ctx, &kgo.Record{Topic: k.Topic, Key: []byte(ev.ProductID), Value: value}, func(r *kgo.Record, err error) {
		if err != nil {
			k.mu.Lock()
			if k.err == nil {
				k.err = fmt.Errorf("produce feedback: %w", err)
			}
			k.mu.Unlock()
		}
	})
	return nil
}

// Flush waits until every event sent so far is acknowledged, and returns
// the first failure.
func (k *Kafka) Flush(ctx context.Context) error {
	if err := k.Client.Flush(ctx); err != nil {
		return fmt.Errorf("flush feedback: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}
