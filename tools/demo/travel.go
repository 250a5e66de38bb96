package demo

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/tools/simulate"
	"github.com/redbandit/redbandit/training/decision"
)

// joinerTick is the joiner's tick interval in the demo: once the visits
// end, the partitions go idle, and a tick ends their last reward waits.
const joinerTick = 200 * time.Millisecond

// counts counts, with committed reads of their topics, what travelled on
// the reward-by-event-id route: decisions and rewards on the decision log
// (not the joiner's ticks), the feedback events the joiner emitted and its
// dead letters.
type counts struct {
	decisionsTopic, feedbackTopic, dlqTopic string

	cl                                *kgo.Client
	decisions, rewards, emitted, dead atomic.Int64
}

func newCounts(brokers []string, decisionsTopic, feedbackTopic, dlqTopic string) (*counts, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(decisionsTopic, feedbackTopic, dlqTopic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("demo: kafka counter: %w", err)
	}
	return &counts{decisionsTopic: decisionsTopic, feedbackTopic: feedbackTopic, dlqTopic: dlqTopic, cl: cl}, nil
}

// run counts until ctx is done.
func (c *counts) run(ctx context.Context) {
	for ctx.Err() == nil {
		fetches := c.cl.PollFetches(ctx)
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case c.feedbackTopic:
				c.emitted.Add(1)
			case c.dlqTopic:
				c.dead.Add(1)
			case c.decisionsTopic:
				for _, h := range r.Headers {
					switch {
					case h.Key != decision.TypeHeader:
					case string(h.Value) == decision.TypeDecision:
						c.decisions.Add(1)
					case string(h.Value) == decision.TypeReward:
						c.rewards.Add(1)
					}
				}
			}
		})
	}
}

func (c *counts) close() { c.cl.Close() }

// observed passes each visit's feedback on to a sink, then to a callback.
type observed struct {
	simulate.Sink
	f func(simulate.Feedback)
}

func (o observed) Send(ctx context.Context, fb simulate.Feedback) error {
	if err := o.Sink.Send(ctx, fb); err != nil {
		return err
	}
	o.f(fb)
	return nil
}
