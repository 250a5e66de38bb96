package trainer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/redbandit/redbandit/model/store"
)

// Partition ownership: assignment (starting from the stored offsets),
// revocation and loss, and fencing: after a conflicting write, partitions
// another member wrote are dropped and sought to the stored offsets.

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
