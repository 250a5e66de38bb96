package sidecar

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/decision"
)

// Defaults of the decision log.
const (
	DefaultDecisionsTopic = decision.DefaultTopic
	// DefaultDecisionBuffer bounds the decisions waiting for Kafka; beyond
	// it, new ones are dropped (and counted) rather than block requests.
	DefaultDecisionBuffer = 10000
	// decisionDeliveryTimeout is how long a logged decision may wait for
	// Kafka before it is dropped (and counted).
	decisionDeliveryTimeout = 30 * time.Second
)

// DecisionProducer is the part of a franz-go client the decision log uses:
// TryProduce fails at once (kgo.ErrMaxBuffered) when the buffer is full
// instead of blocking the request.
type DecisionProducer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// decisionLog writes every decision to the decisions topic, asynchronously:
// a request only encodes its decision and hands it to the producer's
// buffer. When Kafka is down the buffer fills; once it is full, or a
// record waited longer than the delivery timeout, decisions are dropped and
// counted in redbandit_sidecar_decisions_dropped_total.
type decisionLog struct {
	topic   string
	prod    DecisionProducer
	codec   *decision.Codec
	logged  prometheus.Counter
	dropped *prometheus.CounterVec // by reason: buffer-full, kafka, encode
}

func newDecisionLog(topic string, prod DecisionProducer, reg *prometheus.Registry) *decisionLog {
	codec, err := decision.NewCodec()
	if err != nil {
		panic(err) // the schemas are constants: a test catches this
	}
	l := &decisionLog{topic: topic, prod: prod, codec: codec,
		logged: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "redbandit_sidecar_decisions_logged_total", Help: "Decisions Kafka acknowledged on the decision log.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redbandit_sidecar_decisions_dropped_total", Help: "Decisions not logged, by reason (buffer-full: Kafka is slow or down; kafka: not acknowledged in time; encode).",
		}, []string{"reason"}),
	}
	reg.MustRegister(l.logged, l.dropped)
	return l
}

// record hands the decision to the producer; it never blocks.
func (l *decisionLog) record(eventID, model string, q store.Query, items []decision.Item) {
	d := decision.Decision{EventID: eventID, Model: model, Context: q.Context, Items: items,
		Alpha: q.Alpha, Policy: decision.Policy, Timestamp: time.Now().UnixMilli()}
	value, err := l.codec.AppendDecision(make([]byte, 0, 256), &d)
	if err != nil {
		l.dropped.WithLabelValues("encode").Inc()
		return
	}
	rec := &kgo.Record{Topic: l.topic, Key: []byte(eventID), Value: value,
		Headers: []kgo.RecordHeader{{Key: decision.TypeHeader, Value: []byte(decision.TypeDecision)}}}
	// The request's context ends with the request; the record outlives it.
	l.prod.TryProduce(context.Background(), rec, l.done)
}

func (l *decisionLog) done(_ *kgo.Record, err error) {
	switch {
	case err == nil:
		l.logged.Inc()
	case errors.Is(err, kgo.ErrMaxBuffered):
		l.dropped.WithLabelValues("buffer-full").Inc()
	default:
		l.dropped.WithLabelValues("kafka").Inc()
	}
}

// logRecommend logs a recommendation's slate (scores only).
func (s *Server) logRecommend(eventID, model string, q store.Query, items []store.Item) {
	slate := make([]decision.Item, len(items))
	for i, it := range items {
		slate[i] = decision.Item{ProductID: it.ID, Position: int32(i + 1), Score: it.Score}
	}
	s.decisions.record(eventID, model, q, slate)
}

// logExplain logs an explained slate, with each item's mean and bonus.
func (s *Server) logExplain(eventID, model string, q store.Query, items []ExplainedItem) {
	slate := make([]decision.Item, len(items))
	for i, it := range items {
		mean, bonus := it.Mean, it.Bonus
		slate[i] = decision.Item{ProductID: it.ID, Position: int32(i + 1), Score: it.Score, Mean: &mean, Bonus: &bonus}
	}
	s.decisions.record(eventID, model, q, slate)
}

// newDecisionClient returns the decision log's producer: a client of its
// own, so that its bounded buffer and delivery timeout do not touch the
// feedback producer's.
func newDecisionClient(brokers []string, buffer int) (*kgo.Client, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.MaxBufferedRecords(buffer),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(decisionDeliveryTimeout))
	if err != nil {
		return nil, fmt.Errorf("sidecar: kafka decision log: %w", err)
	}
	return cl, nil
}

// RegisterSchemas registers the decision and reward schemas with the schema
// registry at url under the subjects decision.Subjects(topic) and returns
// the ids it assigned (the same ids again for an unchanged schema).
func RegisterSchemas(ctx context.Context, url, topic string) (decisionID, rewardID uint32, err error) {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return 0, 0, fmt.Errorf("schema registry client: %w", err)
	}
	ds, rs := decision.Subjects(topic)
	d, err := cl.CreateSchema(ctx, ds, sr.Schema{Schema: decision.DecisionSchema, Type: sr.TypeAvro})
	if err != nil {
		return 0, 0, fmt.Errorf("register %s: %w", ds, err)
	}
	r, err := cl.CreateSchema(ctx, rs, sr.Schema{Schema: decision.RewardSchema, Type: sr.TypeAvro})
	if err != nil {
		return 0, 0, fmt.Errorf("register %s: %w", rs, err)
	}
	return uint32(d.ID), uint32(r.ID), nil
}
