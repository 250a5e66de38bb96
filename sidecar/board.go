package sidecar

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/redbandit/redbandit/model/store"
)

// The dashboard: GET / serves a page (sidecar/ui, embedded) that polls
// GET /v1/dashboard once a second, and POST /v1/explain and POST /v1/arms
// for a context built from the model's feature spec.
//
// The sidecar samples each model the dashboard shows once a BoardInterval:
// the root's counters (events, rewards, invalid, flush:*), the consumer lag
// (topic end offsets minus the offsets the trainers stored with the model)
// and, if a simulator runs in the same process, its click rates. It keeps
// the last boardSamples samples per model, so a page opened late still
// draws the recent past.
const (
	boardSamples  = 300              // samples kept per model: 5 minutes at 1 s
	boardModels   = 16               // models sampled at most
	boardIdle     = 5 * time.Minute  // a model no page asked for this long is no longer sampled
	ctrWindow     = 1000             // events in a rolling click rate
	rateWindow    = 10 * time.Second // events/s and requests/s are averaged over this
	latencyWindow = 10 * time.Second // p50 and p99 of the requests of this window
	latencyKept   = 4096             // at most this many latencies are kept for them
)

// SimulationStats is a simulator's live state, for the dashboard: visits so
// far and the rolling click rate of each policy it plays (linucb, random,
// oracle).
type SimulationStats struct {
	Visits int                `json:"visits"`
	CTR    map[string]float64 `json:"ctr"`
}

// Admin is the part of a kadm client the dashboard uses to compute the
// consumer lag.
type Admin interface {
	ListStartOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
	ListEndOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
}

// serving keeps the recent recommendation requests: a count per second and
// the latest latencies.
type serving struct {
	mu     sync.Mutex
	counts [boardSamples]struct{ sec, n, errs int64 } // by Unix second mod boardSamples
	lat    [latencyKept]struct {
		at int64 // Unix ns
		d  time.Duration
	}
	next int
}

func (s *serving) record(at time.Time, d time.Duration, failed bool) {
	sec := at.Unix()
	s.mu.Lock()
	c := &s.counts[sec%boardSamples]
	if c.sec != sec {
		c.sec, c.n, c.errs = sec, 0, 0
	}
	c.n++
	if failed {
		c.errs++
	}
	s.lat[s.next] = struct {
		at int64
		d  time.Duration
	}{at.UnixNano(), d}
	s.next = (s.next + 1) % latencyKept
	s.mu.Unlock()
}

// ServingPoint is the serving state at one time (T, Unix ms): requests per second over
// rateWindow, p50 and p99 over latencyWindow (nil without requests), and
// failed requests (status ≥ 500) over rateWindow.
type ServingPoint struct {
	T      int64    `json:"t"`
	RPS    float64  `json:"rps"`
	P50MS  *float64 `json:"p50_ms"`
	P99MS  *float64 `json:"p99_ms"`
	Errors int64    `json:"errors"`
}

func (s *serving) point(now time.Time) ServingPoint {
	p := ServingPoint{T: now.UnixMilli()}
	secs := int64(rateWindow / time.Second)
	from := now.Add(-latencyWindow).UnixNano()
	var lat []time.Duration
	s.mu.Lock()
	var n int64
	for sec := now.Unix() - secs; sec < now.Unix(); sec++ { // complete seconds only
		if c := s.counts[sec%boardSamples]; c.sec == sec {
			n += c.n
			p.Errors += c.errs
		}
	}
	for _, l := range s.lat {
		if l.at >= from && l.at <= now.UnixNano() {
			lat = append(lat, l.d)
		}
	}
	s.mu.Unlock()
	p.RPS = float64(n) / float64(secs)
	if len(lat) > 0 {
		slices.Sort(lat)
		p.P50MS, p.P99MS = ms(quantile(lat, .5)), ms(quantile(lat, .99))
	}
	return p
}

// quantile is the nearest-rank q-quantile of sorted durations.
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

// sample is one look at a model.
type sample struct {
	t       time.Time
	events  int64
	rewards float64
	invalid int64
	lag     *int64
	sim     *SimulationStats
}

// track is what the dashboard keeps of one model.
type track struct {
	samples []sample // oldest first, at most boardSamples
	asked   time.Time
	arms    int
	flush   FlushInfo
}

// FlushInfo is a model's last trainer flush: when it ended (Unix ms, 0 if
// never), how long it took, the arms written and the events folded.
type FlushInfo struct {
	FlushAtMS   int64    `json:"last_flush_ms"`
	FlushMS     *float64 `json:"flush_ms"`
	FlushArms   *int64   `json:"flush_arms"`
	FlushEvents *int64   `json:"flush_events"`
}

// board holds the dashboard's samples.
type board struct {
	mu       sync.Mutex
	models   map[string]*track
	serving  serving
	servings []ServingPoint // oldest first, at most boardSamples
}

func newBoard() *board { return &board{models: map[string]*track{}} }

// sampleLoop samples every tracked model each BoardInterval until ctx is
// done.
func (s *Server) sampleLoop(ctx context.Context) {
	tick := time.NewTicker(s.cfg.BoardInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.sampleAll(ctx)
		}
	}
}

// sampleAll takes one sample of every tracked model (always the default
// one) and of serving.
func (s *Server) sampleAll(ctx context.Context) {
	now := time.Now()
	b := s.board
	b.mu.Lock()
	b.servings = appendCapped(b.servings, b.serving.point(now))
	if _, ok := b.models[s.cfg.Model]; !ok {
		b.models[s.cfg.Model] = &track{asked: now}
	}
	var models []string
	for m, tr := range b.models {
		if m != s.cfg.Model && now.Sub(tr.asked) > boardIdle {
			delete(b.models, m)
			continue
		}
		models = append(models, m)
	}
	b.mu.Unlock()
	ends := s.endOffsets(ctx)
	for _, m := range models {
		if err := s.sampleModel(ctx, m, now, ends); err != nil && ctx.Err() == nil && !errors.Is(err, store.ErrNoModel) {
			s.log.Debug("sidecar: dashboard sample", "model", m, "err", err)
		}
	}
}

// partitionRange is a partition's first and next offset.
type partitionRange struct{ start, end int64 }

// endOffsets returns the feedback topic's offsets by partition, or nil if
// there is no Kafka admin or it failed.
func (s *Server) endOffsets(ctx context.Context) map[int32]partitionRange {
	if s.cfg.Admin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	starts, err := s.cfg.Admin.ListStartOffsets(ctx, s.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = s.cfg.Admin.ListEndOffsets(ctx, s.cfg.Topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		s.log.Debug("sidecar: dashboard: list offsets", "topic", s.cfg.Topic, "err", err)
		return nil
	}
	out := map[int32]partitionRange{}
	ends.Each(func(o kadm.ListedOffset) {
		st, _ := starts.Lookup(o.Topic, o.Partition)
		out[o.Partition] = partitionRange{start: st.Offset, end: o.Offset}
	})
	return out
}

// sampleModel reads the model's summary (and, with ends, its stored
// offsets) in one HMGET and appends a sample.
func (s *Server) sampleModel(ctx context.Context, model string, now time.Time, ends map[int32]partitionRange) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	parts := make([]int32, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	sum, err := store.ReadSummary(ctx, s.cfg.Redis, model, s.cfg.Topic, parts)
	if err != nil {
		return err
	}
	smp := sample{t: now, events: sum.Events, rewards: sum.Rewards, invalid: sum.Invalid}
	arms := sum.Arms
	fl := FlushInfo{FlushAtMS: sum.FlushAtMS, FlushMS: sum.FlushMS, FlushArms: sum.FlushArms, FlushEvents: sum.FlushEvents}
	if ends != nil {
		var lag int64
		for _, p := range parts {
			r := ends[p]
			next := r.start // no stored offset: the trainers have not folded this partition yet
			if o, ok := sum.Offsets[p]; ok {
				next = max(o, r.start)
			}
			lag += max(0, r.end-next)
		}
		smp.lag = &lag
	}
	if s.cfg.Simulation != nil && model == s.cfg.Model {
		st := s.cfg.Simulation()
		smp.sim = &st
	}
	b := s.board
	b.mu.Lock()
	defer b.mu.Unlock()
	tr := b.models[model]
	if tr == nil {
		return nil // dropped meanwhile
	}
	tr.samples = appendCapped(tr.samples, smp)
	tr.arms, tr.flush = arms, fl
	return nil
}

// appendCapped appends v and drops the oldest values beyond boardSamples.
func appendCapped[T any](s []T, v T) []T {
	s = append(s, v)
	if len(s) > boardSamples {
		s = slices.Delete(s, 0, len(s)-boardSamples)
	}
	return s
}

// observedCTR is the mean reward of the events folded between the sample
// that is ctrWindow events before the last one (or the oldest) and the last
// one; nil if none were folded.
func observedCTR(s []sample) *float64 {
	last := s[len(s)-1]
	from := s[0]
	for i := len(s) - 2; i >= 0; i-- {
		from = s[i]
		if last.events-s[i].events >= ctrWindow {
			break
		}
	}
	n := last.events - from.events
	if n <= 0 {
		return nil
	}
	v := (last.rewards - from.rewards) / float64(n)
	return &v
}

// eventsPerSecond is the rate of folded events over the last rateWindow of
// samples; nil with fewer than two samples.
func eventsPerSecond(s []sample) *float64 {
	last := s[len(s)-1]
	var from *sample
	for i := len(s) - 2; i >= 0; i-- {
		from = &s[i]
		if last.t.Sub(s[i].t) >= rateWindow {
			break
		}
	}
	if from == nil || !last.t.After(from.t) {
		return nil
	}
	v := float64(last.events-from.events) / last.t.Sub(from.t).Seconds()
	return &v
}
