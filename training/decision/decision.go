// Package decision defines the records of the decision log: the decisions
// the sidecar made (a ranked slate for a context) and the rewards clients
// later report for them by event id, both on one Kafka topic (default
// "decisions"), keyed by event id, so that a decision and its rewards share
// a partition. The joiner (package training/joiner) turns them into the
// feedback events the trainer folds.
//
// # Records
//
// Every record carries a header "type": "decision", "reward" or "tick". A
// decision or reward value is Avro in the Confluent wire format (a magic
// byte 0, a 4-byte big-endian schema id, the Avro binary body) written with
// DecisionSchema or RewardSchema. Without a schema registry the ids are the
// fixed DecisionSchemaID (2) and RewardSchemaID (3) (the feedback event's is
// 1); with one, they are the ids the registry assigned when the sidecar
// registered the schemas under the subjects decisions-redbandit.Decision and
// decisions-redbandit.Reward (TopicRecordNameStrategy). Readers dispatch on
// the header and read the body with the schema here, whatever the id.
//
// A tick has an empty value: the joiner writes one into a partition that has
// had no record for a while, so that the partition's time (its records'
// timestamps) moves on and the reward wait of its decisions can end.
package decision

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/hamba/avro/v2"

	"github.com/redbandit/redbandit/training/event"
)

// DefaultTopic is the decision log's topic.
const DefaultTopic = "decisions"

// Policy names the policy of the decisions redbandit's sidecar logs.
const Policy = "linucb"

// Header "type" values.
const (
	TypeHeader   = "type"
	TypeDecision = "decision"
	TypeReward   = "reward"
	TypeTick     = "tick"
)

// Fixed schema ids written when no schema registry is configured.
const (
	DecisionSchemaID uint32 = 2
	RewardSchemaID   uint32 = 3
)

// DecisionSchema is the Avro schema of a logged decision.
const DecisionSchema = `{
  "type": "record",
  "name": "Decision",
  "namespace": "redbandit",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "model", "type": "string"},
    {"name": "context", "type": {"type": "array", "items": "double"}},
    {"name": "items", "type": {"type": "array", "items": {
      "type": "record", "name": "SlateItem", "fields": [
        {"name": "product_id", "type": "string"},
        {"name": "position", "type": "int"},
        {"name": "score", "type": "double"},
        {"name": "mean", "type": ["null", "double"], "default": null},
        {"name": "bonus", "type": ["null", "double"], "default": null}
      ]}}},
    {"name": "alpha", "type": "double"},
    {"name": "policy", "type": "string"},
    {"name": "propensities", "type": ["null", {"type": "array", "items": "double"}], "default": null},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}`

// RewardSchema is the Avro schema of a reward reported by event id.
const RewardSchema = `{
  "type": "record",
  "name": "Reward",
  "namespace": "redbandit",
  "fields": [
    {"name": "event_id", "type": "string"},
    {"name": "model", "type": "string"},
    {"name": "product_id", "type": "string"},
    {"name": "reward", "type": "double"},
    {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}}
  ]
}`

// Subject names of the schemas in a registry (TopicRecordNameStrategy).
func Subjects(topic string) (decision, reward string) {
	return topic + "-redbandit.Decision", topic + "-redbandit.Reward"
}

// ErrUndecodable reports a record that is not a decision, reward or tick.
var ErrUndecodable = errors.New("undecodable")

// Item is one product of a slate; Position counts from 1. Mean and Bonus
// are nil when the sidecar did not compute them (recommend; explain has
// them).
type Item struct {
	ProductID string   `avro:"product_id"`
	Position  int32    `avro:"position"`
	Score     float64  `avro:"score"`
	Mean      *float64 `avro:"mean"`
	Bonus     *float64 `avro:"bonus"`
}

// Decision is one logged decision. Propensities is nil: LinUCB is
// deterministic given its model, so it has none.
type Decision struct {
	EventID      string    `avro:"event_id"`
	Model        string    `avro:"model"`
	Context      []float64 `avro:"context"`
	Items        []Item    `avro:"items"`
	Alpha        float64   `avro:"alpha"`
	Policy       string    `avro:"policy"`
	Propensities []float64 `avro:"propensities"`
	Timestamp    int64     `avro:"timestamp"` // Unix milliseconds
}

// Reward is a reward reported for product ProductID of decision EventID.
type Reward struct {
	EventID   string  `avro:"event_id"`
	Model     string  `avro:"model"`
	ProductID string  `avro:"product_id"`
	Reward    float64 `avro:"reward"`
	Timestamp int64   `avro:"timestamp"`
}

// Codec encodes and decodes decision-log values. It is safe for concurrent
// use. The schema ids it writes are settable (SetIDs) for a registry.
type Codec struct {
	api      avro.API
	decision avro.Schema
	reward   avro.Schema

	mu                   sync.RWMutex
	decisionID, rewardID uint32
}

var (
	parseOnce sync.Once
	parsed    [2]avro.Schema
	parseErr  error
)

// NewCodec returns a codec writing the fixed schema ids.
func NewCodec() (*Codec, error) {
	parseOnce.Do(func() {
		cache := &avro.SchemaCache{}
		parsed[0], parseErr = avro.ParseWithCache(DecisionSchema, "", cache)
		if parseErr == nil {
			parsed[1], parseErr = avro.ParseWithCache(RewardSchema, "", cache)
		}
	})
	if parseErr != nil {
		return nil, fmt.Errorf("decision: parse avro schema: %w", parseErr)
	}
	api := avro.Config{DisableBlockSizeHeader: true, MaxByteSliceSize: 64 << 10, MaxSliceAllocSize: 1 << 16}.Freeze()
	return &Codec{api: api, decision: parsed[0], reward: parsed[1], decisionID: DecisionSchemaID, rewardID: RewardSchemaID}, nil
}

// SetIDs sets the schema ids written in the wire header (those a registry
// assigned).
func (c *Codec) SetIDs(decision, reward uint32) {
	c.mu.Lock()
	c.decisionID, c.rewardID = decision, reward
	c.mu.Unlock()
}

// AppendDecision appends d in the Confluent wire format.
func (c *Codec) AppendDecision(dst []byte, d *Decision) ([]byte, error) {
	c.mu.RLock()
	id := c.decisionID
	c.mu.RUnlock()
	return c.append(dst, id, c.decision, d)
}

// AppendReward appends r in the Confluent wire format.
func (c *Codec) AppendReward(dst []byte, r *Reward) ([]byte, error) {
	c.mu.RLock()
	id := c.rewardID
	c.mu.RUnlock()
	return c.append(dst, id, c.reward, r)
}

func (c *Codec) append(dst []byte, id uint32, s avro.Schema, v any) ([]byte, error) {
	body, err := c.api.Marshal(s, v)
	if err != nil {
		return nil, fmt.Errorf("decision: encode avro: %w", err)
	}
	dst = append(dst, event.Magic)
	dst = binary.BigEndian.AppendUint32(dst, id)
	return append(dst, body...), nil
}

// DecodeDecision decodes a decision value.
func (c *Codec) DecodeDecision(b []byte) (Decision, error) {
	var d Decision
	err := c.decode(b, c.decision, &d)
	if err == nil && d.EventID == "" {
		err = fmt.Errorf("%w: decision without event_id", ErrUndecodable)
	}
	return d, err
}

// DecodeReward decodes a reward value.
func (c *Codec) DecodeReward(b []byte) (Reward, error) {
	var r Reward
	err := c.decode(b, c.reward, &r)
	if err == nil && (r.EventID == "" || r.ProductID == "") {
		err = fmt.Errorf("%w: reward without event_id or product_id", ErrUndecodable)
	}
	return r, err
}

func (c *Codec) decode(b []byte, s avro.Schema, v any) error {
	if len(b) < 5 || b[0] != event.Magic {
		return fmt.Errorf("%w: not in the Confluent wire format", ErrUndecodable)
	}
	if err := c.api.Unmarshal(s, b[5:], v); err != nil {
		return fmt.Errorf("%w: avro: %v", ErrUndecodable, err)
	}
	return nil
}
