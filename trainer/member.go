package trainer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
	"github.com/redbandit/redbandit/training/event"
)

// partition is the state of one owned partition.
type partition struct {
	guard    string                   // value of its offset field last read or written ("" = absent)
	written  int64                    // the offset in guard; -1 if none
	next     int64                    // next offset to consume; -1 if unknown (nothing stored or consumed)
	deltas   map[string]*linucb.Delta // per product: the unflushed events
	events   int64                    // unflushed valid events
	invalid  int64                    // unflushed dead letters
	resync   bool                     // fenced: seek to next before consuming again
	hwm      int64                    // high watermark in its last fetch; -1 if none yet
	logStart int64                    // log start offset in its last fetch
}

func newPartition(stored string) (*partition, error) {
	p := &partition{guard: stored, written: -1, next: -1, hwm: -1, deltas: map[string]*linucb.Delta{}}
	if stored != "" {
		v, err := store.ParseOffset(stored)
		if err != nil {
			return nil, err
		}
		p.written, p.next = v, v
	}
	return p, nil
}

// member is one consumer-group member. The poll loop and the group
// callbacks share its state under mu.
type member struct {
	cfg     Config
	log     *slog.Logger
	meta    store.Meta
	codec   *event.Codec
	view    event.View  // the record being folded; reused
	cl      *kgo.Client // consumer
	dlq     *kgo.Client // dead-letter producer
	baseCtx context.Context

	mu          sync.Mutex
	parts       map[int32]*partition
	bases       map[string]store.StoredArm // stored state of arms, as last read or written
	dirty       int                        // number of (partition, product) deltas
	dlqPending  bool                       // dead letters produced since the last flush
	inflight    *flushing                  // the write in flight, if any
	lastFailure time.Time                  // of the last failed flush
	behind      bool                       // a backlog seen since the last flush that found none
	lagging     bool                       // some partition was behind after the last poll
	flushedAt   time.Time                  // when the poll loop last started a flush
	fatal       error
	total       struct{ events, invalid, flushes, conflicts int64 }

	dlqMu  sync.Mutex
	dlqErr error
}

func newMember(ctx context.Context, cfg Config, meta store.Meta, log *slog.Logger) (*member, error) {
	var codec *event.Codec
	var err error
	if cfg.SchemaRegistry != "" {
		fetch, ferr := registryFetcher(cfg.SchemaRegistry)
		if ferr != nil {
			return nil, ferr
		}
		codec, err = event.NewRegistryCodec(meta.Dim, fetch)
	} else {
		codec, err = event.NewCodec(meta.Dim)
	}
	if err != nil {
		return nil, err
	}
	m := &member{cfg: cfg, log: log, meta: meta, codec: codec, baseCtx: context.WithoutCancel(ctx),
		parts: map[int32]*partition{}, bases: map[string]store.StoredArm{}}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.BlockRebalanceOnPoll(),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		kgo.AdjustFetchOffsetsFn(m.assigned),
		kgo.OnPartitionsRevoked(m.revoked),
		kgo.OnPartitionsLost(m.lost),
		kgo.WithLogger(kgoLogger{log}),
	}
	if m.cl, err = kgo.NewClient(append(opts, cfg.KafkaOpts...)...); err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	if m.dlq, err = kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...), kgo.DefaultProduceTopic(cfg.DLQTopic)); err != nil {
		m.cl.Close()
		return nil, fmt.Errorf("kafka dead-letter producer: %w", err)
	}
	return m, nil
}

// run is the poll loop. It owns both Kafka clients and closes them.
func (m *member) run(ctx context.Context) error {
	defer m.dlq.Close()
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
			delta = linucb.NewDelta(m.meta.Dim)
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
	var e *event.Error
	detail := err.Error()
	if errors.As(err, &e) {
		detail = e.Detail
	}
	rec := &kgo.Record{Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
		{Key: "reason", Value: []byte(event.Reason(err))},
		{Key: "error", Value: []byte(detail)},
		{Key: "source-topic", Value: []byte(r.Topic)},
		{Key: "source-partition", Value: []byte(strconv.Itoa(int(r.Partition)))},
		{Key: "source-offset", Value: []byte(strconv.FormatInt(r.Offset, 10))},
	}}
	m.dlqPending = true
	m.dlq.Produce(m.baseCtx, rec, func(_ *kgo.Record, err error) {
		if err != nil {
			m.dlqMu.Lock()
			m.dlqErr = errors.Join(m.dlqErr, err)
			m.dlqMu.Unlock()
		}
	})
	m.log.Debug("trainer: dead letter", "partition", r.Partition, "offset", r.Offset, "reason", event.Reason(err), "err", detail)
}

// Flushing. A flush seals the unflushed state of every owned partition (its
// deltas, counters and next offset), adds the deltas to the arms' stored
// state and writes the result with the offsets in one atomic script call.
// The Cholesky solves and the write run on a goroutine of their own, so the
// poll loop goes on folding new events into fresh deltas while Redis works.
// At most one write is in flight; whatever else changes the partitions or
// the arm cache (a flush, a rebalance, a fenced or reset partition) first
// waits for it and applies its outcome (settle). A write that fails gives
// its sealed deltas back to the partitions, so the next flush retries them;
// the offset guards make a write that failed on the client side after
// Redis applied it harmless: the retry is refused, and the partition is
// fenced and re-read from the stored offsets.

// sealedPart is the state of one partition taken by a flush.
type sealedPart struct {
	deltas          map[string]*linucb.Delta
	events, invalid int64
	next            int64
}

// flushing is the write in flight.
type flushing struct {
	attempt int
	parts   map[int32]sealedPart
	arms    []store.ArmWrite
	vers    []int64 // set by the writer on success
	stats   FlushStats
	start   time.Time
	done    chan error    // receives the writer's outcome, once
	ended   chan struct{} // closed after done received it
}

// flushOrNote starts a flush from the poll loop, after the previous one has
// landed; failures are noted.
func (m *member) flushOrNote(ctx context.Context) {
	m.flushedAt = time.Now()
	err := m.drain(ctx)
	if err == nil {
		err = m.start(ctx, nil)
	}
	if err != nil {
		m.note(err)
	}
}

// drainOrNote waits for the write in flight, noting a failure.
func (m *member) drainOrNote(ctx context.Context) {
	if err := m.drain(ctx); err != nil {
		m.note(err)
	}
}

// note records a flush failure: fatal ones stop the trainer, others are
// retried at the next flush. An arm that cannot be solved is fatal: decoding
// refuses events that could make one (non-finite or beyond
// linucb.MaxAbsContext), so its stored state is damaged, and a retry would
// fail every flush of the member forever.
func (m *member) note(err error) {
	m.lastFailure = time.Now()
	if errors.Is(err, ErrDeadLetter) || errors.Is(err, store.ErrBadModel) || errors.Is(err, store.ErrBadArg) ||
		errors.Is(err, linucb.ErrNonFinite) || errors.Is(err, linucb.ErrNotPositiveDefinite) {
		m.fatal = err
		return
	}
	m.log.Warn("trainer: flush failed, will retry", "err", err)
}

// changed reports whether a flush has anything to write.
func (m *member) changed() bool {
	for _, st := range m.parts {
		if len(st.deltas) > 0 || st.next != st.written {
			return true
		}
	}
	return false
}

// flush writes everything unflushed and waits for it; mu is held. A
// failure of the write that was in flight is only logged: its state is
// part of this flush.
func (m *member) flush(ctx context.Context) error {
	if err := m.drain(ctx); err != nil {
		m.log.Warn("trainer: flush failed, writing again", "err", err)
	}
	if err := m.start(ctx, nil); err != nil {
		return err
	}
	return m.drain(ctx)
}

// drain waits until no write is in flight (retries after conflicts
// included) and returns the last outcome; mu is held.
func (m *member) drain(ctx context.Context) error {
	var err error
	for m.inflight != nil {
		err = m.settle(ctx, true)
	}
	return err
}

// start seals the unflushed state and starts writing it, if anything
// changed; mu is held and no write is in flight. prev is the failed attempt
// this one retries, nil for a new flush.
func (m *member) start(ctx context.Context, prev *flushing) error {
	if !m.changed() {
		return nil
	}
	if m.inflight != nil {
		panic("trainer: flush started with a write in flight")
	}
	if m.dlqPending {
		if err := m.dlq.Flush(ctx); err != nil {
			return fmt.Errorf("wait for dead letters: %w", err)
		}
		m.dlqMu.Lock()
		err := m.dlqErr
		m.dlqMu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDeadLetter, err)
		}
		m.dlqPending = false
	}
	f := &flushing{attempt: 1, parts: map[int32]sealedPart{}, stats: FlushStats{Offsets: map[int32]int64{}},
		start: time.Now(), done: make(chan error, 1), ended: make(chan struct{})}
	if prev != nil {
		f.attempt, f.stats, f.start = prev.attempt+1, prev.stats, prev.start
	}
	for pid, st := range m.parts {
		f.parts[pid] = sealedPart{deltas: st.deltas, events: st.events, invalid: st.invalid, next: st.next}
		st.deltas, st.events, st.invalid = map[string]*linucb.Delta{}, 0, 0
	}
	m.dirty = 0
	w, err := m.prepare(ctx, f)
	if err != nil {
		m.giveBack(f)
		return fmt.Errorf("flushing: %w", err)
	}
	if m.cfg.beforeApply != nil {
		m.cfg.beforeApply(f.attempt)
	}
	m.inflight = f
	go func() {
		// The write outlives a cancelled poll loop: shutdown waits for it
		// (drain) rather than abandoning it half-way.
		wctx, cancel := context.WithTimeout(m.baseCtx, DefaultFlushTimeout)
		defer cancel()
		f.done <- m.write(wctx, f, w)
		close(f.ended)
	}()
	return nil
}

// prepare adds the sealed deltas to the arms' stored state (reading the
// arms not cached) and builds the write with the offsets and their guards;
// mu is held.
func (m *member) prepare(ctx context.Context, f *flushing) (*store.Write, error) {
	d, lambda := m.meta.Dim, m.meta.Lambda
	pids := slices.Sorted(maps.Keys(f.parts))
	var ids []string
	var events, invalid int64
	var rewards float64
	for _, pid := range pids {
		sp := f.parts[pid]
		events += sp.events
		invalid += sp.invalid
		for id, delta := range sp.deltas {
			ids = append(ids, id)
			rewards += delta.Rewards()
		}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids) // a product may have deltas in two partitions
	var missing []string
	for _, id := range ids {
		if _, ok := m.bases[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		stored, err := store.ReadArms(ctx, m.cfg.Redis, m.cfg.Model, d, lambda, missing)
		if err != nil {
			return nil, err
		}
		for _, s := range stored {
			m.bases[s.ID] = s
		}
	}
	f.arms = make([]store.ArmWrite, len(ids))
	for i, id := range ids {
		base := m.bases[id]
		arm, err := linucb.Restore(d, base.Arm.A(), base.Arm.B(), base.Arm.N(), base.Arm.Rewards())
		if err != nil {
			return nil, fmt.Errorf("arm %s: %w", id, err)
		}
		for _, pid := range pids {
			if delta := f.parts[pid].deltas[id]; delta != nil {
				arm.Add(delta)
			}
		}
		f.arms[i] = store.ArmWrite{ID: id, Version: base.Version, Arm: arm}
	}
	w := &store.Write{Model: m.cfg.Model, Features: m.meta.Features, Groups: m.meta.Groups, Lambda: lambda,
		Events: events, Rewards: rewards, Invalid: invalid, Arms: f.arms}
	for _, pid := range pids {
		st, sp := m.parts[pid], f.parts[pid]
		field := store.OffsetField(m.cfg.Topic, pid)
		w.Guards = append(w.Guards, store.Guard{Field: field, Want: st.guard})
		if sp.next >= 0 && sp.next != st.written {
			w.Set = append(w.Set, store.Field{Name: field, Value: store.FormatOffset(sp.next)})
		}
	}
	return w, nil
}

// write solves the arms and applies w; it runs on the flush's goroutine and
// touches nothing but f and w.
func (m *member) write(ctx context.Context, f *flushing, w *store.Write) error {
	for i := range f.arms {
		a := &f.arms[i]
		params, err := a.Arm.Solve()
		if err != nil {
			return fmt.Errorf("solve arm %s: %w", a.ID, err)
		}
		a.Params = params
	}
	vers, err := w.Apply(ctx, m.cfg.Redis)
	if err != nil {
		return fmt.Errorf("write %d arms and %d offsets: %w", len(f.arms), len(w.Set), err)
	}
	f.vers = vers
	f.stats.Duration = time.Since(f.start)
	m.recordFlush(ctx, f.stats.Duration, len(f.arms), w.Events)
	return nil
}

// settle applies the outcome of the write in flight, waiting for it if
// block; mu is held. After a conflict it re-reads the offsets (fencing
// partitions another member wrote) and, as the same flush, starts another
// attempt at once if anything is left to write.
func (m *member) settle(ctx context.Context, block bool) error {
	f := m.inflight
	if f == nil {
		return nil
	}
	var err error
	if block {
		err = <-f.done
	} else {
		select {
		case err = <-f.done:
		default:
			return nil
		}
	}
	m.inflight = nil
	if err == nil {
		m.landed(f)
		return nil
	}
	m.giveBack(f)
	if !errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("flushing: %w", err)
	}
	m.total.conflicts++
	fenced, rerr := m.refence(ctx)
	if rerr != nil {
		return fmt.Errorf("flushing: %w", errors.Join(err, rerr))
	}
	f.stats.Fenced = append(f.stats.Fenced, fenced...)
	m.log.Warn("trainer: write conflict", "attempt", f.attempt, "fenced_partitions", fenced, "err", err)
	if f.attempt == maxWriteAttempts {
		return fmt.Errorf("flushing: %w", err)
	}
	if !m.changed() {
		f.stats.Attempts, f.stats.Duration = f.attempt, time.Since(f.start)
		m.report(f.stats)
		return nil
	}
	return m.start(ctx, f)
}

// landed marks a successful write's state as stored; mu is held.
func (m *member) landed(f *flushing) {
	for i, a := range f.arms {
		m.bases[a.ID] = store.StoredArm{ID: a.ID, Version: f.vers[i], Arm: a.Arm}
	}
	st := f.stats
	st.Attempts = f.attempt
	st.Products += len(f.arms)
	for pid, sp := range f.parts {
		st.Events += sp.events
		st.Invalid += sp.invalid
		if sp.next < 0 {
			continue
		}
		st.Offsets[pid] = sp.next
		if p := m.parts[pid]; p != nil {
			p.written, p.guard = sp.next, store.FormatOffset(sp.next)
		}
	}
	m.report(st)
}

// giveBack returns a failed write's sealed state to its partitions, to be
// written by the next flush; mu is held.
func (m *member) giveBack(f *flushing) {
	for pid, sp := range f.parts {
		st := m.parts[pid]
		if st == nil {
			continue // cannot happen: partitions are forgotten only after a drain
		}
		for id, delta := range sp.deltas {
			if cur := st.deltas[id]; cur != nil {
				cur.Merge(delta)
			} else {
				st.deltas[id] = delta
				m.dirty++
			}
		}
		st.events += sp.events
		st.invalid += sp.invalid
	}
}

// report logs a completed flush and hands it to Config.OnFlush.
func (m *member) report(st FlushStats) {
	m.total.flushes++
	m.log.Info("trainer: flush", "products", st.Products, "events", st.Events, "invalid", st.Invalid,
		"partitions", len(st.Offsets), "attempts", st.Attempts, "duration", st.Duration)
	if m.cfg.OnFlush != nil {
		m.cfg.OnFlush(st)
	}
}

// recordFlush stores a flush's statistics in the model root for dashboards
// (docs/FORMAT.md, flush:* fields). They are informational, so they are
// written after the atomic write and a failure is only logged.
func (m *member) recordFlush(ctx context.Context, took time.Duration, arms int, events int64) {
	rec := store.FlushRecord{AtMS: time.Now().UnixMilli(), MS: float64(took.Microseconds()) / 1000, Arms: arms, Events: events}
	if err := store.WriteFlushRecord(ctx, m.cfg.Redis, m.cfg.Model, rec); err != nil {
		m.log.Warn("trainer: record flush statistics", "err", err)
	}
}

// refence re-reads the stored offsets of the owned partitions after a
// conflict. A partition whose stored offset is not the one this member last
// read or wrote was written by another member: its unflushed state is
// dropped and it is marked to be sought to the stored offset. The arm cache
// is cleared, since arms may have moved too.
func (m *member) refence(ctx context.Context) ([]int32, error) {
	clear(m.bases)
	pids := slices.Sorted(maps.Keys(m.parts))
	stored, err := m.readOffsets(ctx, pids)
	if err != nil {
		return nil, err
	}
	var fenced []int32
	for _, pid := range pids {
		st := m.parts[pid]
		if stored[pid] == st.guard {
			continue
		}
		fresh, err := newPartition(stored[pid])
		if err != nil {
			return nil, err
		}
		m.dropDeltas(st)
		st.guard, st.written, st.next, st.resync = fresh.guard, fresh.written, fresh.next, true
		st.invalid = 0
		fenced = append(fenced, pid)
	}
	return fenced, nil
}

func (m *member) dropDeltas(st *partition) {
	m.dirty -= len(st.deltas)
	clear(st.deltas)
	st.events = 0
}

// seekFenced seeks the partitions marked for a resync to their next offset
// (their first available offset if none), from the poll goroutine.
func (m *member) seekFenced(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var unknown []int32
	set := map[int32]kgo.EpochOffset{}
	for pid, st := range m.parts {
		if !st.resync {
			continue
		}
		if st.next < 0 {
			unknown = append(unknown, pid)
			continue
		}
		set[pid] = kgo.EpochOffset{Epoch: -1, Offset: st.next}
	}
	if len(set) == 0 && len(unknown) == 0 {
		return nil
	}
	if len(unknown) > 0 {
		starts, err := kadm.NewClient(m.cl).ListStartOffsets(ctx, m.cfg.Topic)
		if err != nil {
			return fmt.Errorf("list start offsets of %s: %w", m.cfg.Topic, err)
		}
		for _, pid := range unknown {
			o, ok := starts.Lookup(m.cfg.Topic, pid)
			if !ok || o.Err != nil {
				return fmt.Errorf("start offset of partition %d of %s: %v", pid, m.cfg.Topic, o.Err)
			}
			set[pid] = kgo.EpochOffset{Epoch: -1, Offset: o.Offset}
		}
	}
	m.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{m.cfg.Topic: set})
	for pid, o := range set {
		st := m.parts[pid]
		st.resync = false
		if st.next < 0 {
			st.next = o.Offset // events before it are gone; the next flush stores it
		}
		m.log.Info("trainer: partition sought to the stored offset", "partition", pid, "offset", o.Offset)
	}
	return nil
}

// readOffsets reads the stored offsets ("" if absent) of the given
// partitions.
func (m *member) readOffsets(ctx context.Context, pids []int32) (map[int32]string, error) {
	return store.ReadOffsets(ctx, m.cfg.Redis, m.cfg.Model, m.cfg.Topic, pids)
}

// assigned is the AdjustFetchOffsetsFn: it reads the stored offsets of the
// newly assigned partitions and starts them there.
func (m *member) assigned(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ps := offsets[m.cfg.Topic]
	if len(ps) == 0 {
		return offsets, nil
	}
	pids := slices.Sorted(maps.Keys(ps))
	var stored map[int32]string
	var err error
	for attempt, wait := 1, 200*time.Millisecond; ; attempt, wait = attempt+1, 2*wait {
		if stored, err = m.readOffsets(ctx, pids); err == nil {
			break
		}
		if attempt == assignAttempts || ctx.Err() != nil {
			// Without its offsets the member cannot consume these
			// partitions safely: stop, and let a restart retry.
			err = fmt.Errorf("read stored offsets of partitions %v on assignment: %w", pids, err)
			m.mu.Lock()
			m.fatal = err
			m.mu.Unlock()
			return nil, err
		}
		m.log.Warn("trainer: cannot read stored offsets, retrying", "partitions", pids, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainOrNote(ctx)
	clear(m.bases)
	start := map[int32]int64{}
	for _, pid := range pids {
		st, err := newPartition(stored[pid])
		if err != nil {
			m.fatal = err
			return nil, err
		}
		if old := m.parts[pid]; old != nil {
			m.dropDeltas(old)
		}
		m.parts[pid] = st
		if st.next >= 0 {
			ps[pid] = kgo.NewOffset().At(st.next).WithEpoch(-1)
		} else {
			ps[pid] = kgo.NewOffset().AtStart()
		}
		start[pid] = st.next
	}
	m.log.Info("trainer: partitions assigned", "offsets", start)
	return offsets, nil
}

// revoked flushes everything this member owns, then forgets the revoked
// partitions. If the flush fails their next owner starts from the stored
// offsets, so nothing is lost or counted twice.
func (m *member) revoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ctx, cancel := context.WithTimeout(m.baseCtx, DefaultFlushTimeout)
	defer cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.flush(ctx); err != nil {
		m.log.Warn("trainer: flush before revocation failed", "err", err)
		if errors.Is(err, ErrDeadLetter) {
			m.fatal = err
		}
	}
	m.forget(revoked[m.cfg.Topic], "revoked")
}

// lost forgets partitions that may already belong to another member,
// without flushing.
func (m *member) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.drainOrNote(ctx)
	m.forget(lost[m.cfg.Topic], "lost")
}

func (m *member) forget(pids []int32, why string) {
	if len(pids) == 0 {
		return
	}
	var dropped int64
	for _, pid := range pids {
		if st := m.parts[pid]; st != nil {
			dropped += st.events
			m.dropDeltas(st)
			delete(m.parts, pid)
		}
	}
	clear(m.bases)
	m.log.Info("trainer: partitions "+why, "partitions", pids, "unflushed_events_dropped", dropped)
}

// registryFetcher returns a SchemaFetcher reading writer schemas from the
// schema registry at url.
func registryFetcher(url string) (event.SchemaFetcher, error) {
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return nil, fmt.Errorf("schema registry client: %w", err)
	}
	return func(ctx context.Context, id uint32) (string, error) {
		s, err := cl.SchemaByID(ctx, int(id))
		var re *sr.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return "", fmt.Errorf("%w: %v", event.ErrUnknownSchema, err)
		}
		if err != nil {
			return "", err
		}
		if s.Type != sr.TypeAvro {
			return "", fmt.Errorf("%w: schema %d is %s, not Avro", event.ErrUnknownSchema, id, s.Type)
		}
		return s.Schema, nil
	}, nil
}

// kgoLogger passes franz-go's log lines to slog; franz-go's info level is
// chatty, so it is logged at debug.
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
