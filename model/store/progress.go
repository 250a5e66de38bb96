package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// The trainers' records in the root hash: their Kafka offsets, written
// atomically with the arms (as Write guards and fields), and the record of
// their last flush, written after it for dashboards (docs/FORMAT.md,
// "Trainer offsets and bootstrap records").

// offsetPrefix starts the root-hash fields holding the trainers' offsets.
const offsetPrefix = "off:"

// OffsetField returns the root-hash field holding the next offset to consume
// of topic's partition: off:<topic>:<partition>.
func OffsetField(topic string, partition int32) string {
	return offsetPrefix + topic + ":" + strconv.Itoa(int(partition))
}

// FormatOffset returns an offset as an offset field stores it (decimal).
func FormatOffset(next int64) string { return strconv.FormatInt(next, 10) }

// ParseOffset parses a stored offset field; anything but a non-negative
// decimal is ErrBadModel.
func ParseOffset(stored string) (int64, error) {
	v, err := strconv.ParseInt(stored, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%w: stored offset %q is not an offset", ErrBadModel, stored)
	}
	return v, nil
}

// ReadOffsets reads the offset fields of topic's given partitions from
// model's root in one HMGET. The values are returned as stored ("" if
// absent), since a writer guards on exactly that text (Guard); ParseOffset
// parses them.
func ReadOffsets(ctx context.Context, c rueidis.Client, model, topic string, partitions []int32) (map[int32]string, error) {
	out := make(map[int32]string, len(partitions))
	if len(partitions) == 0 {
		return out, nil
	}
	fields := make([]string, len(partitions))
	for i, p := range partitions {
		fields[i] = OffsetField(topic, p)
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(RootKey(model)).Field(fields...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("read offsets: %w", err)
	}
	for i, v := range vals {
		if s, err := v.ToString(); err == nil {
			out[partitions[i]] = s
		} else if !rueidis.IsRedisNil(err) {
			return nil, fmt.Errorf("read offset %s: %w", fields[i], err)
		}
	}
	return out, nil
}

// FlushRecord is a trainer's record of its last flush: the root's flush:*
// fields.
type FlushRecord struct {
	AtMS   int64   // when it ended, Unix ms
	MS     float64 // how long it took, ms (stored to the microsecond)
	Arms   int     // arms written
	Events int64   // events folded
}

// WriteFlushRecord stores r in model's root (one HSET). The record is
// informational and not part of the atomic write of the arms.
func WriteFlushRecord(ctx context.Context, c rueidis.Client, model string, r FlushRecord) error {
	err := c.Do(ctx, c.B().Hset().Key(RootKey(model)).FieldValue().
		FieldValue("flush:at_ms", strconv.FormatInt(r.AtMS, 10)).
		FieldValue("flush:ms", strconv.FormatFloat(r.MS, 'f', 3, 64)).
		FieldValue("flush:arms", strconv.Itoa(r.Arms)).
		FieldValue("flush:events", strconv.FormatInt(r.Events, 10)).Build()).Error()
	if err != nil {
		return fmt.Errorf("record flush in %s: %w", RootKey(model), err)
	}
	return nil
}

// Summary is a model's progress as its root hash records it, for
// reporting: a missing or malformed counter reads as 0, a missing or
// malformed flush field as nil (FlushAtMS as 0).
type Summary struct {
	Arms    int     // number of arms
	Events  int64   // events folded
	Rewards float64 // the sum of their rewards
	Invalid int64   // events dead-lettered
	// The trainers' last flush (FlushRecord): when it ended (Unix ms, 0
	// if never), how long it took (ms), the arms written, the events
	// folded.
	FlushAtMS   int64
	FlushMS     *float64
	FlushArms   *int64
	FlushEvents *int64
	// Offsets holds the stored next offset of each partition asked for
	// whose offset field is an integer.
	Offsets map[int32]int64
}

// ReadSummary reads model's counters, its last flush record and the stored
// offsets of topic's given partitions (none if partitions is empty), all
// in one HMGET of the root. A model without a format field is ErrNoModel.
func ReadSummary(ctx context.Context, c rueidis.Client, model, topic string, partitions []int32) (Summary, error) {
	fields := []string{"format", "arms", "events", "rewards", "invalid", "flush:at_ms", "flush:ms", "flush:arms", "flush:events"}
	const fixed = 9
	for _, p := range partitions {
		fields = append(fields, OffsetField(topic, p))
	}
	vals, err := c.Do(ctx, c.B().Hmget().Key(RootKey(model)).Field(fields...).Build()).ToArray()
	if err != nil {
		return Summary{}, fmt.Errorf("read summary of %s: %w", RootKey(model), err)
	}
	str := make([]string, len(vals))
	for i, v := range vals {
		str[i], _ = v.ToString() // "" for nil
	}
	if str[0] == "" {
		return Summary{}, fmt.Errorf("%w: no model at %s", ErrNoModel, RootKey(model))
	}
	var s Summary
	s.Arms, _ = strconv.Atoi(str[1])
	s.Events, _ = strconv.ParseInt(str[2], 10, 64)
	s.Rewards, _ = strconv.ParseFloat(str[3], 64)
	s.Invalid, _ = strconv.ParseInt(str[4], 10, 64)
	s.FlushAtMS, _ = strconv.ParseInt(str[5], 10, 64)
	s.FlushMS, s.FlushArms, s.FlushEvents = optFloat(str[6]), optInt(str[7]), optInt(str[8])
	if len(partitions) > 0 {
		s.Offsets = make(map[int32]int64, len(partitions))
		for i, p := range partitions {
			if o, err := strconv.ParseInt(str[fixed+i], 10, 64); err == nil {
				s.Offsets[p] = o
			}
		}
	}
	return s, nil
}

func optFloat(s string) *float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &v
}

func optInt(s string) *int64 {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	return &v
}
