package trainer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/redbandit/redbandit/model/linucb"
	"github.com/redbandit/redbandit/model/store"
)

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
	if err := m.dlq.settle(ctx); err != nil {
		return err
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
// (docs/FORMAT.md, flush:* fields) and puts the scoring script back into a
// script cache that lost it. Both are outside the atomic write, so a
// failure is only logged.
func (m *member) recordFlush(ctx context.Context, took time.Duration, arms int, events int64) {
	rec := store.FlushRecord{AtMS: time.Now().UnixMilli(), MS: float64(took.Microseconds()) / 1000, Arms: arms, Events: events}
	if err := store.WriteFlushRecord(ctx, m.cfg.Redis, m.cfg.Model, rec); err != nil {
		m.log.Warn("trainer: record flush statistics", "err", err)
	}
	// A restarted Redis has lost its script cache; clients that call the
	// scoring script by SHA and may not send it need it back.
	if err := store.ReloadScoringScript(ctx, m.cfg.Redis); err != nil {
		m.log.Warn("trainer: reload the scoring script", "err", err)
	}
}
