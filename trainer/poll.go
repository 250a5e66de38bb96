package trainer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/event"
)

// The poll loop: it folds the records of each poll into the partitions'
// deltas, dead-letters bad events, and decides when to flush (flush.go).

// run is the poll loop. It owns both Kafka clients and closes them.
func (m *member) run(ctx context.Context) error {
	defer m.dlq.close()
	m.log.Info("trainer: started", "dim", m.meta.Dim, "flush_interval", m.cfg.FlushInterval, "max_dirty", m.cfg.MaxDirty, "dlq", m.cfg.DLQTopic)
	var runErr error
	nextFlush := time.Now().Add(m.cfg.FlushInterval)
	for runErr == nil && ctx.Err() == nil {
		if err := m.seekFenced(ctx); err != nil {
			runErr = err
			break
		}
		deadline := nextFlush
		if at := m.catchUpAt(); m.behind && !m.lagging && at.Before(deadline) {
			deadline = at // waiting out the spacing of a catch-up flush
		}
		pctx, cancel := context.WithDeadline(ctx, deadline)
		m.mu.Lock()
		if f := m.inflight; f != nil {
			// Wake up when the write ends, to take its outcome (landed,
			// retried after a conflict, or given back for the next flush)
			// without waiting for a record.
			go func() {
				select {
				case <-f.ended:
					cancel()
				case <-pctx.Done():
				}
			}()
		}
		m.mu.Unlock()
		// Everything buffered (at most one fetch response per broker), so
		// that the client fetches the next while this one is folded.
		fetches := m.cl.PollFetches(pctx)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		m.mu.Lock()
		runErr = m.fetchErrors(ctx, fetches)
		if runErr == nil {
			fetches.EachRecord(func(r *kgo.Record) { m.process(ctx, r) })
			if err := m.settle(ctx, false); err != nil {
				m.note(err)
			}
			m.watermarks(fetches)
			now := time.Now()
			due := !now.Before(nextFlush)
			if caughtUp := m.behind && !m.lagging && !now.Before(m.catchUpAt()); due || caughtUp {
				if !due {
					m.log.Debug("trainer: caught up with a backlog, flushing")
				}
				m.flushOrNote(ctx)
				nextFlush = time.Now().Add(m.cfg.FlushInterval)
				m.behind = m.lagging
			}
		}
		if runErr == nil {
			runErr = m.fatal
		}
		m.mu.Unlock()
		m.cl.AllowRebalance()
	}

	// Flush what this member owns, then leave the group: the revoke
	// callback that Close runs has nothing left to write.
	fctx, cancel := context.WithTimeout(m.baseCtx, DefaultFlushTimeout)
	defer cancel()
	m.mu.Lock()
	err := m.flush(fctx)
	m.mu.Unlock()
	if err != nil {
		m.log.Error("trainer: final flush failed; the next owner resumes from the stored offsets", "err", err)
	}
	m.cl.Close()
	m.log.Info("trainer: stopped", "events", m.total.events, "invalid", m.total.invalid,
		"flushes", m.total.flushes, "conflicts", m.total.conflicts)
	if runErr == nil {
		runErr = m.fatal
	}
	return runErr
}

// watermarks notes the high watermarks of a poll's partitions and whether
// the member is behind on any of its partitions. A member that was behind
// flushes as soon as it is not (a catch-up flush), so that a backlog —
// after a restart, an outage, a burst — reaches Redis once it is folded
// rather than at the next tick; a member that keeps up flushes on the
// interval only.
func (m *member) watermarks(fetches kgo.Fetches) {
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if st := m.parts[p.Partition]; st != nil && p.Topic == m.cfg.Topic && p.Err == nil && p.HighWatermark >= 0 {
			st.hwm, st.logStart = p.HighWatermark, p.LogStartOffset
		}
	})
	m.lagging = false
	for _, st := range m.parts {
		// A partition not in any fetch yet counts as caught up.
		if st.next >= 0 && st.next < st.hwm || st.next < 0 && st.logStart < st.hwm {
			m.lagging = true
		}
	}
	m.behind = m.behind || m.lagging
}

// catchUpAt is the earliest time for a catch-up flush: a tenth of the flush
// interval after the poll loop last started one, so that a member hovering
// at the end of its partitions does not flush on every poll.
func (m *member) catchUpAt() time.Time {
	return m.flushedAt.Add(m.cfg.FlushInterval / 10)
}

// fetchErrors handles the errors of a poll; it returns a fatal error.
func (m *member) fetchErrors(ctx context.Context, fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, p int32, err error) {
		switch {
		case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		case errors.Is(err, kerr.OffsetOutOfRange):
			st := m.parts[p]
			if st == nil {
				return
			}
			if !m.cfg.ResetOutOfRange {
				fatal = fmt.Errorf("%w: partition %d of %s at offset %d (field %s of %s); restart with --reset-out-of-range to resume from the oldest available event",
					ErrOffsetOutOfRange, p, topic, st.next, store.OffsetField(topic, p), store.RootKey(m.cfg.Model))
				return
			}
			m.log.Warn("trainer: stored offset out of range, restarting the partition from its first available offset",
				"partition", p, "offset", st.next)
			m.drainOrNote(ctx)
			m.dropDeltas(st)
			st.next, st.resync = -1, true
		default:
			m.log.Warn("trainer: fetch error", "topic", topic, "partition", p, "err", err)
		}
	})
	return fatal
}

// process folds one record into its partition's state, or dead-letters it.
func (m *member) process(ctx context.Context, r *kgo.Record) {
	st := m.parts[r.Partition]
	if m.fatal != nil || r.Topic != m.cfg.Topic || st == nil || st.resync || (st.next >= 0 && r.Offset < st.next) {
		return // stopping, not owned, awaiting a seek, or already folded
	}
	ev := &m.view
	err := m.codec.DecodeView(ctx, r.Value, ev)
	if err != nil && !rejected(err) {
		// The schema registry failed: stop before this record, so the
		// offsets written never pass it.
		m.fatal = fmt.Errorf("trainer: partition %d offset %d: %w", r.Partition, r.Offset, err)
		return
	}
	if err != nil {
		m.deadLetter(r, err)
		st.invalid++
		m.total.invalid++
	} else {
		delta := st.deltas[string(ev.ProductID)] // no copy for a lookup
		if delta == nil {
			// The model's half-life (0: none) fades each arm's evidence
			// once per event it folds (linucb, Forgetting).
			delta = linucb.NewForgettingDelta(m.meta.Dim, m.meta.Lambda, m.meta.HalfLife)
			st.deltas[string(ev.ProductID)] = delta
			m.dirty++
		}
		_ = delta.Update(ev.ContextVector, ev.Reward) // Decode validated the values
		st.events++
		m.total.events++
	}
	st.next = r.Offset + 1
	if m.dirty >= m.cfg.MaxDirty && time.Since(m.lastFailure) > time.Second {
		m.flushOrNote(ctx)
	}
}

// rejected reports whether err is an event's fault (an *event.Error)
// rather than the schema registry's.
func rejected(err error) bool {
	var e *event.Error
	return errors.As(err, &e)
}

func (m *member) deadLetter(r *kgo.Record, err error) {
	detail := m.dlq.send(r, err)
	m.log.Debug("trainer: dead letter", "partition", r.Partition, "offset", r.Offset, "reason", event.Reason(err), "err", detail)
}
