package trainer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/event"
)

// deadLetters produces the events a member cannot fold to the dead-letter
// topic. A flush first waits until every dead letter produced since the
// last one is acknowledged (settle), so that the offsets it stores never
// pass an event whose dead letter Kafka does not have.
type deadLetters struct {
	cl      *kgo.Client
	ctx     context.Context // of the produce calls: outlives the poll loop's
	pending bool            // produced since the last settle; the member's mu guards it

	mu  sync.Mutex // guards err, which produce callbacks set
	err error
}

func newDeadLetters(ctx context.Context, brokers []string, topic string) (*deadLetters, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		return nil, fmt.Errorf("kafka dead-letter producer: %w", err)
	}
	return &deadLetters{cl: cl, ctx: ctx}, nil
}

// send produces r, rejected because of cause, with headers reason, error,
// source-topic, source-partition and source-offset. It returns the error
// header, for logging.
func (d *deadLetters) send(r *kgo.Record, cause error) string {
	var e *event.Error
	detail := cause.Error()
	if errors.As(cause, &e) {
		detail = e.Detail
	}
	rec := &kgo.Record{Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
		{Key: "reason", Value: []byte(event.Reason(cause))},
		{Key: "error", Value: []byte(detail)},
		{Key: "source-topic", Value: []byte(r.Topic)},
		{Key: "source-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: "source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
	}}
	d.pending = true
	d.cl.Produce(d.ctx, rec, func(_ *kgo.Record, err error) {
		if err != nil {
			d.mu.Lock()
			d.err = errors.Join(d.err, err)
			d.mu.Unlock()
		}
	})
	return detail
}

// settle waits until the dead letters produced since the last settle are
// acknowledged. A refused one is ErrDeadLetter, then and at every later
// settle: the trainer must stop rather than move its offsets past it.
func (d *deadLetters) settle(ctx context.Context) error {
	if !d.pending {
		return nil
	}
	if err := d.cl.Flush(ctx); err != nil {
		return fmt.Errorf("wait for dead letters: %w", err)
	}
	d.mu.Lock()
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDeadLetter, err)
	}
	d.pending = false
	return nil
}

func (d *deadLetters) close() { d.cl.Close() }
