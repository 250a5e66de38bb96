package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/training/decision"
	"github.com/redbandit/redbandit/training/event"
)

// DefaultTopic is the topic feedback is produced to.
const DefaultTopic = "feedback-events"

// MaxBatch bounds the events of one POST /v1/feedback.
const MaxBatch = 1000

// errFeedbackOff reports feedback capture without a Kafka producer.
var errFeedbackOff = errors.New("feedback capture is disabled: start the sidecar with --brokers")

// feedbackRequest is one event of POST /v1/feedback.
type feedbackRequest struct {
	Model      string          `json:"model"`
	EventID    string          `json:"event_id"`
	ProductID  string          `json:"product_id"`
	Reward     *float64        `json:"reward"`
	Context    json.RawMessage `json:"context"`
	Attributes map[string]any  `json:"attributes"`
	Timestamp  json.RawMessage `json:"timestamp"` // Unix ms or RFC 3339; default now
}

// feedbackBody is a single event or {"events": [...]}.
type feedbackBody struct {
	feedbackRequest
	Events []feedbackRequest `json:"events"`
}

// FeedbackResponse is the reply of POST /v1/feedback.
type FeedbackResponse struct {
	Accepted int `json:"accepted"`
}

// feedback validates every event of the request, encodes them (Avro in the
// Confluent wire format for 0/1 rewards, JSON for fractional ones — the
// trainer detects the encoding per record), produces them keyed by product
// id, and answers 202 only once Kafka has acknowledged all of them. A batch
// is all or nothing on validation. A 503 means Kafka failed or did not
// answer in time: some or all of the events may still have been recorded.
func (s *Server) feedback(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.cfg.Producer == nil {
		return 0, nil, errFeedbackOff
	}
	var body feedbackBody
	if err := s.decode(w, r, &body); err != nil {
		return 0, nil, err
	}
	reqs := body.Events
	if len(reqs) == 0 {
		reqs = []feedbackRequest{body.feedbackRequest}
	} else if body.EventID != "" || body.ProductID != "" || body.Reward != nil {
		return 0, nil, badRequest(`give one event or "events": [...], not both`)
	}
	if len(reqs) > MaxBatch {
		return 0, nil, badRequest("%d events in one request, more than %d", len(reqs), MaxBatch)
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Timeout)
	defer cancel()
	records := make([]*kgo.Record, len(reqs))
	for i, fr := range reqs {
		rec, err := s.feedbackRecord(ctx, fr)
		if err != nil {
			if len(reqs) > 1 {
				err = fmt.Errorf("event %d: %w", i+1, err)
			}
			return 0, nil, err
		}
		records[i] = rec
	}
	start := time.Now()
	err := s.produce(ctx, records)
	s.metrics.produce.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.produceErrors.Inc()
		return 0, nil, err
	}
	return http.StatusAccepted, FeedbackResponse{Accepted: len(records)}, nil
}

// produce sends the records and waits until Kafka has acknowledged them all
// or ctx is done. An idempotent producer cannot abandon a record whose
// request is in flight, so on a timeout the records may still be delivered
// later: the 503 then says the outcome is unknown. The goroutine that
// collects the acknowledgements ends once every record is acknowledged or
// failed (at the latest when the producer is closed).
func (s *Server) produce(ctx context.Context, records []*kgo.Record) error {
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	wg.Add(len(records))
	for _, rec := range records {
		s.cfg.Producer.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		if first != nil {
			return fmt.Errorf("%w: %v", errKafka, first)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w within %v: it may or may not be recorded", errKafka, s.cfg.Timeout)
	}
}

// errKafka marks a failed produce (503).
var errKafka = errors.New("kafka did not acknowledge the feedback")

func (s *Server) feedbackRecord(ctx context.Context, fr feedbackRequest) (*kgo.Record, error) {
	model := fr.Model
	if model == "" {
		model = s.cfg.Model
	}
	if fr.ProductID == "" {
		return nil, badRequest("missing product_id")
	}
	if fr.Reward == nil || !(*fr.Reward >= 0 && *fr.Reward <= 1) {
		return nil, badRequest("reward must be a number in [0, 1]")
	}
	if fr.EventID != "" && len(bytes.TrimSpace(fr.Context)) == 0 && fr.Attributes == nil {
		return s.rewardRecord(model, fr)
	}
	info, err := s.modelInfo(ctx, model)
	if err != nil {
		return nil, err
	}
	x, err := s.context(ctx, model, recommendRequest{Context: fr.Context, Attributes: fr.Attributes})
	if err != nil {
		return nil, err
	}
	if len(x) != info.meta.Dim {
		return nil, badRequest("context has %d values, model %s has dimension %d", len(x), model, info.meta.Dim)
	}
	ts, err := timestampMS(fr.Timestamp)
	if err != nil {
		return nil, err
	}
	ev := event.Event{EventID: fr.EventID, ProductID: fr.ProductID, Reward: *fr.Reward, ContextVector: x, Timestamp: ts}
	if ev.EventID == "" {
		ev.EventID = newEventID()
	}
	codec, err := event.NewCodec(info.meta.Dim)
	if err != nil {
		return nil, err
	}
	if err := codec.Validate(ev); err != nil {
		return nil, badRequest("%v", err)
	}
	value, err := codec.AppendRecord(nil, ev)
	if err != nil {
		return nil, badRequest("encode the event: %v", err)
	}
	return &kgo.Record{Topic: s.cfg.Topic, Key: []byte(ev.ProductID), Value: value}, nil
}

// rewardRecord is a reward by event id: a decision.Reward produced to the
// decision log keyed by the event id, so that it shares the partition of
// its decision; the joiner matches them.
func (s *Server) rewardRecord(model string, fr feedbackRequest) (*kgo.Record, error) {
	if s.cfg.DecisionsTopic == "" {
		return nil, badRequest("a reward by event id needs the decision log (--decisions-topic); send context or attributes instead")
	}
	ts, err := timestampMS(fr.Timestamp)
	if err != nil {
		return nil, err
	}
	codec := s.rewardCodec
	if s.decisions != nil {
		codec = s.decisions.codec // the registry's schema ids, if any
	}
	value, err := codec.AppendReward(nil, &decision.Reward{EventID: fr.EventID, Model: model,
		ProductID: fr.ProductID, Reward: *fr.Reward, Timestamp: ts})
	if err != nil {
		return nil, badRequest("encode the reward: %v", err)
	}
	return &kgo.Record{Topic: s.cfg.DecisionsTopic, Key: []byte(fr.EventID), Value: value,
		Headers: []kgo.RecordHeader{{Key: decision.TypeHeader, Value: []byte(decision.TypeReward)}}}, nil
}

// timestampMS parses Unix milliseconds or an RFC 3339 string; empty is now.
func timestampMS(raw json.RawMessage) (int64, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return time.Now().UnixMilli(), nil
	}
	if s[0] == '"' {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return 0, badRequest("timestamp: %v", err)
		}
		t, err := time.Parse(time.RFC3339, str)
		if err != nil {
			return 0, badRequest("timestamp %q is not RFC 3339", str)
		}
		return t.UnixMilli(), nil
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsInf(f, 0) || f != math.Trunc(f) {
		return 0, badRequest("timestamp must be Unix milliseconds or an RFC 3339 string")
	}
	return int64(f), nil
}
